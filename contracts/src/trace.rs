//! W3C Trace Context (`traceparent`) values: parse, create, and derive a child.
//!
//! The format is four dash-separated hex fields (`00-<trace id>-<parent id>-<flags>`); a
//! whole OpenTelemetry SDK would be a large dependency for carrying one header across tiers.

use rand::RngCore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

/// The value of one lower-case hex digit; upper case is not valid in a `traceparent`.
fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn hex_field<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes the lower-case hex digits of `bytes` into `out`, two per byte. Every request
/// formats its ids (logs, `traceresponse`), so this is a table lookup, not `core::fmt`.
fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), bytes.len() * 2);
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
        pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
    }
}

/// Text of a fixed length kept on the stack: an id in hex, or a whole `traceparent` value.
/// It formats (`Display`) and converts (`as_str`, `as_bytes`) without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdText<const N: usize>([u8; N]);

impl<const N: usize> IdText<N> {
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written into it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl<const N: usize> std::ops::Deref for IdText<N> {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> std::fmt::Display for IdText<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> std::fmt::Debug for IdText<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Length of a version-00 `traceparent` value: `00-<32>-<16>-<2>`.
pub const TRACEPARENT_LEN: usize = 55;

impl TraceParent {
    /// Parses a `traceparent` header; `None` for anything malformed or all-zero ids.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        // Version 00 has exactly four fields; later versions may append more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let version: [u8; 1] = hex_field(version)?;
        if version[0] == 0xff {
            return None;
        }
        let trace_id: [u8; 16] = hex_field(trace)?;
        let parent_id: [u8; 8] = hex_field(parent)?;
        let flags: [u8; 1] = hex_field(flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags: flags[0],
        })
    }

    /// A new trace, sampled.
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        while trace_id == [0; 16] {
            rng.fill_bytes(&mut trace_id);
        }
        while parent_id == [0; 8] {
            rng.fill_bytes(&mut parent_id);
        }
        TraceParent {
            trace_id,
            parent_id,
            flags: 1,
        }
    }

    /// The same trace with a new span id, for an outgoing call or message.
    pub fn child(&self) -> Self {
        let mut next = Self::new_root();
        next.trace_id = self.trace_id;
        next.flags = self.flags;
        next
    }

    pub fn trace_id_hex(&self) -> String {
        self.trace_id_text().as_str().to_owned()
    }

    pub fn span_id_hex(&self) -> String {
        self.span_id_text().as_str().to_owned()
    }

    /// The trace id in hex, without allocating.
    pub fn trace_id_text(&self) -> IdText<32> {
        let mut out = [0u8; 32];
        encode_hex(&self.trace_id, &mut out);
        IdText(out)
    }

    /// The span (parent) id in hex, without allocating.
    pub fn span_id_text(&self) -> IdText<16> {
        let mut out = [0u8; 16];
        encode_hex(&self.parent_id, &mut out);
        IdText(out)
    }

    /// The `traceparent` (or `traceresponse`) header value, without allocating.
    pub fn header_text(&self) -> IdText<TRACEPARENT_LEN> {
        let mut out = [b'-'; TRACEPARENT_LEN];
        out[..2].copy_from_slice(b"00");
        encode_hex(&self.trace_id, &mut out[3..35]);
        encode_hex(&self.parent_id, &mut out[36..52]);
        encode_hex(&[self.flags], &mut out[53..]);
        IdText(out)
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.header_text().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(value).expect("valid");
        assert_eq!(parsed.to_string(), value);
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
    }

    /// The formatting this module used before the table: `format!("{b:02x}")` per byte.
    fn hex_by_fmt(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn table_hex_matches_fmt() {
        let all: Vec<u8> = (0..=255).collect();
        let mut out = vec![0u8; all.len() * 2];
        encode_hex(&all, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), hex_by_fmt(&all));
        for _ in 0..1000 {
            let p = TraceParent::new_root();
            assert_eq!(p.trace_id_text().as_str(), hex_by_fmt(&p.trace_id));
            assert_eq!(p.span_id_text().as_str(), hex_by_fmt(&p.parent_id));
            assert_eq!(p.trace_id_hex(), hex_by_fmt(&p.trace_id));
            assert_eq!(p.span_id_hex(), hex_by_fmt(&p.parent_id));
            let old = format!(
                "00-{}-{}-{:02x}",
                hex_by_fmt(&p.trace_id),
                hex_by_fmt(&p.parent_id),
                p.flags
            );
            assert_eq!(p.header_text().as_str(), old);
            assert_eq!(p.to_string(), old);
            assert_eq!(TraceParent::parse(&old), Some(p));
        }
        for flags in [0u8, 1, 0x0f, 0x10, 0xff] {
            let p = TraceParent {
                flags,
                ..TraceParent::new_root()
            };
            assert!(p.to_string().ends_with(&format!("-{flags:02x}")));
            assert_eq!(TraceParent::parse(&p.to_string()), Some(p));
        }
    }

    #[test]
    fn parses_every_digit() {
        let value = "00-0123456789abcdeffedcba9876543210-a1b2c3d4e5f60789-00";
        let p = TraceParent::parse(value).expect("valid");
        assert_eq!(p.trace_id_hex(), "0123456789abcdeffedcba9876543210");
        assert_eq!(p.span_id_hex(), "a1b2c3d4e5f60789");
        assert_eq!(p.flags, 0);
        for bad in [
            "00-0123456789abcdeffedcba987654321g-a1b2c3d4e5f60789-00",
            "00-0123456789abcdeffedcba98765432 0-a1b2c3d4e5f60789-00",
            "00-0123456789abcdeffedcba9876543210-a1b2c3d4e5f6078+-00",
            "00-0123456789abcdeffedcba9876543210-a1b2c3d4e5f60789-0/",
            "00-0123456789abcdeffedcba9876543210-a1b2c3d4e5f6078é-00",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn child_keeps_trace() {
        let root = TraceParent::new_root();
        let child = root.child();
        assert_eq!(root.trace_id, child.trace_id);
        assert_ne!(root.parent_id, child.parent_id);
        assert!(TraceParent::parse(&child.to_string()).is_some());
    }
}
