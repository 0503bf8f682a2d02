//! A loopback dingtalk for channel tests (being written).
