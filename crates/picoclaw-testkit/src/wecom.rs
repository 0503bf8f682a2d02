//! A loopback wecom for channel tests (being written).
