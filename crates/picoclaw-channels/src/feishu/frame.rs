//! The long connection's frames: protobuf `pbbp2.Frame` of the official SDKs, encoded and
//! decoded by hand (five field types, no crate needed). Decoding skips unknown fields and
//! answers malformed bytes with an error, never a panic.

/// `method` of a control frame (ping, pong).
pub(crate) const CONTROL: i32 = 0;
/// `method` of a data frame (event, card).
pub(crate) const DATA: i32 = 1;

/// The most headers one frame may carry (Feishu's carry about ten). Without a cap, a 16 MiB
/// frame of empty headers (two bytes each) would become millions of string pairs.
pub(crate) const MAX_HEADERS: usize = 64;

/// One `pbbp2.Frame`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) seq_id: u64,
    pub(crate) log_id: u64,
    pub(crate) service: i32,
    pub(crate) method: i32,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) payload_encoding: String,
    pub(crate) payload_type: String,
    pub(crate) payload: Option<Vec<u8>>,
    pub(crate) log_id_new: String,
}

impl Frame {
    /// A ping for service `service`.
    pub(crate) fn ping(service: i32) -> Self {
        Self {
            service,
            method: CONTROL,
            headers: vec![("type".into(), "ping".into())],
            ..Self::default()
        }
    }

    /// The first value of header `key`.
    pub(crate) fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The frame's bytes, fields in number order as the SDKs write them.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.payload.as_ref().map_or(0, Vec::len));
        put_varint_field(&mut out, 1, self.seq_id);
        put_varint_field(&mut out, 2, self.log_id);
        // int32 fields are sign-extended to 64 bits on the wire.
        put_varint_field(&mut out, 3, i64::from(self.service) as u64);
        put_varint_field(&mut out, 4, i64::from(self.method) as u64);
        for (k, v) in &self.headers {
            let mut header = Vec::with_capacity(k.len() + v.len() + 4);
            put_bytes_field(&mut header, 1, k.as_bytes());
            put_bytes_field(&mut header, 2, v.as_bytes());
            put_bytes_field(&mut out, 5, &header);
        }
        put_bytes_field(&mut out, 6, self.payload_encoding.as_bytes());
        put_bytes_field(&mut out, 7, self.payload_type.as_bytes());
        if let Some(p) = &self.payload {
            put_bytes_field(&mut out, 8, p);
        }
        put_bytes_field(&mut out, 9, self.log_id_new.as_bytes());
        out
    }

    /// Reads a frame; `Err` says what is wrong with the bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut frame = Self::default();
        let mut r = Reader { bytes, at: 0 };
        while !r.done() {
            let (field, wire) = r.tag()?;
            match (field, wire) {
                (1, 0) => frame.seq_id = r.varint()?,
                (2, 0) => frame.log_id = r.varint()?,
                // int32 on the wire: the low 32 bits of the (sign-extended) varint.
                (3, 0) => frame.service = r.varint()? as u32 as i32,
                (4, 0) => frame.method = r.varint()? as u32 as i32,
                (5, 2) => {
                    if frame.headers.len() >= MAX_HEADERS {
                        return Err(format!("more than {MAX_HEADERS} headers"));
                    }
                    frame.headers.push(decode_header(r.bytes()?)?);
                }
                (6, 2) => frame.payload_encoding = text(r.bytes()?)?,
                (7, 2) => frame.payload_type = text(r.bytes()?)?,
                (8, 2) => frame.payload = Some(r.bytes()?.to_vec()),
                (9, 2) => frame.log_id_new = text(r.bytes()?)?,
                (1..=9, _) => return Err(format!("field {field} has wire type {wire}")),
                _ => r.skip(wire)?,
            }
        }
        Ok(frame)
    }
}

fn decode_header(bytes: &[u8]) -> Result<(String, String), String> {
    let mut r = Reader { bytes, at: 0 };
    let (mut key, mut value) = (String::new(), String::new());
    while !r.done() {
        match r.tag()? {
            (1, 2) => key = text(r.bytes()?)?,
            (2, 2) => value = text(r.bytes()?)?,
            (1 | 2, wire) => return Err(format!("header field has wire type {wire}")),
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok((key, value))
}

fn text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string field is not UTF-8".to_owned())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .bytes
                .get(self.at)
                .ok_or("a varint runs past the end")?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("a varint is longer than 10 bytes".into())
    }

    fn tag(&mut self) -> Result<(u64, u64), String> {
        let tag = self.varint()?;
        let field = tag >> 3;
        if field == 0 {
            return Err("field number 0".into());
        }
        Ok((field, tag & 7))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or("a field runs past the end")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "a length is too large")?;
        self.take(len)
    }

    fn skip(&mut self, wire: u64) -> Result<(), String> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes().map(drop),
            5 => self.take(4).map(drop),
            other => Err(format!("unsupported wire type {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_ping_has_the_bytes_the_sdks_write() {
        // SeqID 0, LogID 0, service 7, method 0, header type=ping, empty strings 6, 7, 9.
        let expected = [
            0x08, 0x00, 0x10, 0x00, 0x18, 0x07, 0x20, 0x00, 0x2a, 0x0c, 0x0a, 0x04, b't', b'y',
            b'p', b'e', 0x12, 0x04, b'p', b'i', b'n', b'g', 0x32, 0x00, 0x3a, 0x00, 0x4a, 0x00,
        ];
        assert_eq!(Frame::ping(7).encode(), expected);
        assert_eq!(Frame::decode(&expected).unwrap(), Frame::ping(7));
    }

    #[test]
    fn frames_round_trip_and_unknown_fields_are_skipped() {
        let frame = Frame {
            seq_id: 300,
            log_id: u64::MAX,
            service: -1,
            method: DATA,
            headers: vec![("type".into(), "event".into()), ("sum".into(), "1".into())],
            payload: Some(b"{\"a\":1}".to_vec()),
            log_id_new: "log".into(),
            ..Frame::default()
        };
        let mut bytes = frame.encode();
        assert_eq!(Frame::decode(&bytes).unwrap(), frame);
        // Field 15 (varint), 16 (fixed64), 17 (bytes), 18 (fixed32): skipped.
        bytes.extend_from_slice(&[0x78, 0x01, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0x8a, 0x01, 0x02, 0xff, 0xff, 0x95, 0x01, 1, 2, 3, 4]);
        assert_eq!(Frame::decode(&bytes).unwrap(), frame);
    }

    #[test]
    fn frames_of_too_many_headers_are_refused() {
        let mut frame = Frame::ping(1);
        frame.headers = (0..MAX_HEADERS)
            .map(|n| (n.to_string(), String::new()))
            .collect();
        assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
        frame.headers.push(("one".into(), "more".into()));
        let e = Frame::decode(&frame.encode()).unwrap_err();
        assert!(e.contains("headers"), "{e}");
        // Empty headers (two bytes each), as many as a large frame holds: refused.
        let flood: Vec<u8> = std::iter::repeat_n([0x2a, 0x00], 100_000)
            .flatten()
            .collect();
        assert!(Frame::decode(&flood).is_err());
    }

    #[test]
    fn malformed_bytes_are_errors() {
        let good = Frame::ping(3).encode();
        for cut in 1..good.len() {
            let _ = Frame::decode(&good[..cut]);
        }
        assert!(
            Frame::decode(&[0x2a, 0x7f, 0x00]).is_err(),
            "length past the end"
        );
        assert!(
            Frame::decode(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ])
            .is_err(),
            "a varint without end"
        );
        assert!(Frame::decode(&[0x0a, 0x00]).is_err(), "SeqID as bytes");
        assert!(Frame::decode(&[0x00]).is_err(), "field 0");
        assert!(Frame::decode(&[0x7b]).is_err(), "a group");
        assert!(
            Frame::decode(&[0x2a, 0x03, 0x0a, 0x01, 0xff]).is_err(),
            "a header that is not UTF-8"
        );
        assert!(
            Frame::decode(&[
                0x42, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ])
            .is_err(),
            "a huge length"
        );
    }
}
