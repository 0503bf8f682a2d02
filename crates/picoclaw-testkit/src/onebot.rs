//! A loopback onebot for channel tests (being written).
