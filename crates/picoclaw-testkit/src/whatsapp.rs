//! A loopback whatsapp for channel tests (being written).
