//! A loopback qq for channel tests (being written).
