//! A loopback feishu for channel tests (being written).
