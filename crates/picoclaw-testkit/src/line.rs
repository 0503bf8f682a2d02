//! A loopback line for channel tests (being written).
