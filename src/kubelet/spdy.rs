//! A minimal SPDY/3.1 framing layer, the server side of what client-go's port-forward speaks
//! (through `github.com/moby/spdystream`): frames read and written, and header blocks
//! compressed with zlib and SPDY/3's fixed dictionary, one compression context per direction
//! for the whole connection. Streams and flow control live in [`super::portforward`].
//!
//! Why written here: no maintained Rust crate speaks SPDY (it was superseded by HTTP/2 in
//! 2015); Kubernetes still uses it for port-forward, so the kubelet needs these few frames.
//!
//! Frames (all integers big-endian): a control frame is `1 | version(15) | type(16) |
//! flags(8) | length(24) | payload`; a data frame is `0 | stream-id(31) | flags(8) | length(24)
//! | data`. A header block, before compression, is `count(32)` then for each header
//! `len(32) name len(32) value`, names in lower case.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// SPDY's version number in control frames.
const VERSION: u16 = 3;
/// The largest payload a frame may have (24 bits).
const MAX_LENGTH: usize = 0xff_ffff;

/// `FLAG_FIN`: the sender's last frame on the stream.
pub(super) const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes used here.
pub(super) mod status {
    /// PROTOCOL_ERROR.
    pub(crate) const PROTOCOL_ERROR: u32 = 1;
    /// REFUSED_STREAM.
    pub(crate) const REFUSED_STREAM: u32 = 3;
}

/// What can go wrong reading or writing SPDY.
#[derive(Debug, thiserror::Error)]
pub(super) enum SpdyError {
    /// A control frame of another SPDY version.
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    /// A frame too short for its type, or a header block that does not add up.
    #[error("malformed SPDY {0} frame")]
    Malformed(&'static str),
    /// The header block would not (de)compress.
    #[error("SPDY header compression failed: {0}")]
    Compression(String),
    /// A frame larger than SPDY's 24-bit length.
    #[error("SPDY frame of {0} bytes is too large")]
    TooLarge(usize),
}

/// The header names and values of a stream, in order.
pub(super) type Headers = Vec<(String, String)>;

/// One SPDY/3.1 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Frame {
    /// Opens a stream.
    SynStream {
        /// The new stream.
        stream: u32,
        /// The stream it is associated with (0: none).
        associated: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// `FLAG_FIN`, `FLAG_UNIDIRECTIONAL`.
        flags: u8,
        /// Its headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream.
        stream: u32,
        /// `FLAG_FIN`.
        flags: u8,
        /// Reply headers.
        headers: Headers,
    },
    /// Ends a stream abnormally.
    RstStream {
        /// The stream.
        stream: u32,
        /// Why.
        status: u32,
    },
    /// Settings (id, value), ignored by this server.
    Settings {
        /// The settings.
        entries: Vec<(u32, u32)>,
    },
    /// A ping, answered with the same id.
    Ping {
        /// The ping's id.
        id: u32,
    },
    /// The peer ends the session.
    GoAway {
        /// The last stream the sender accepted.
        last_good: u32,
        /// Why.
        status: u32,
    },
    /// More headers on a stream.
    Headers {
        /// The stream.
        stream: u32,
        /// `FLAG_FIN`.
        flags: u8,
        /// The headers.
        headers: Headers,
    },
    /// Flow control: the sender may send `delta` more bytes on the stream (0: the session).
    WindowUpdate {
        /// The stream, or 0.
        stream: u32,
        /// How many bytes more.
        delta: u32,
    },
    /// Data on a stream.
    Data {
        /// The stream.
        stream: u32,
        /// `FLAG_FIN`.
        flags: u8,
        /// The bytes.
        data: Bytes,
    },
    /// A control frame type this server does not use (skipped, as SPDY requires).
    Unknown {
        /// Its type.
        kind: u16,
    },
}

/// SPDY/3's header-compression dictionary (SPDY Protocol Draft 3, section 2.6.10.1): these
/// words each with a 32-bit length before it, then [`DICTIONARY_TAIL`] as it is.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The end of SPDY/3's dictionary, after the length-prefixed words.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// SPDY/3's header-compression dictionary.
pub(super) fn dictionary() -> Vec<u8> {
    let mut d = Vec::with_capacity(1424);
    for word in DICTIONARY_WORDS {
        d.put_u32(word.len() as u32);
        d.extend_from_slice(word.as_bytes());
    }
    d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    d
}

/// Reads and writes frames on one connection: the two header-compression contexts.
pub(super) struct Codec {
    inflate: Decompress,
    deflate: Compress,
    dictionary: Vec<u8>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

fn compression(e: impl std::fmt::Display) -> SpdyError {
    SpdyError::Compression(e.to_string())
}

impl Codec {
    /// A codec for a new connection.
    pub(super) fn new() -> Result<Self, SpdyError> {
        let dictionary = dictionary();
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(&dictionary).map_err(compression)?;
        Ok(Codec {
            inflate: Decompress::new(true),
            deflate,
            dictionary,
        })
    }

    fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let start = self.deflate.total_in();
        loop {
            let consumed = (self.deflate.total_in() - start) as usize;
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            self.deflate
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
                .map_err(compression)?;
            let consumed = (self.deflate.total_in() - start) as usize;
            if consumed == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    fn decompress(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let start = self.inflate.total_in();
        loop {
            let consumed = (self.inflate.total_in() - start) as usize;
            if out.len() == out.capacity() {
                out.reserve(1024);
            }
            let before = (self.inflate.total_in(), self.inflate.total_out());
            match self
                .inflate
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&self.dictionary)
                        .map_err(compression)?;
                    continue;
                }
                Err(e) => return Err(compression(e)),
            }
            let consumed = (self.inflate.total_in() - start) as usize;
            let stuck = before == (self.inflate.total_in(), self.inflate.total_out());
            if (consumed == input.len() && out.len() < out.capacity()) || stuck {
                return Ok(out);
            }
        }
    }

    fn header_block(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut block = Vec::new();
        block.put_u32(headers.len() as u32);
        for (name, value) in headers {
            block.put_u32(name.len() as u32);
            block.extend_from_slice(name.to_ascii_lowercase().as_bytes());
            block.put_u32(value.len() as u32);
            block.extend_from_slice(value.as_bytes());
        }
        self.compress(&block)
    }

    fn headers_of(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let block = self.decompress(compressed)?;
        let mut b = &block[..];
        let bad = || SpdyError::Malformed("header block");
        let string = |b: &mut &[u8]| -> Result<String, SpdyError> {
            if b.remaining() < 4 {
                return Err(bad());
            }
            let len = b.get_u32() as usize;
            if b.remaining() < len {
                return Err(bad());
            }
            let s = String::from_utf8_lossy(&b[..len]).into_owned();
            b.advance(len);
            Ok(s)
        };
        if b.remaining() < 4 {
            return Err(bad());
        }
        let count = b.get_u32();
        let mut headers = Vec::new();
        for _ in 0..count {
            let name = string(&mut b)?;
            let value = string(&mut b)?;
            headers.push((name, value));
        }
        Ok(headers)
    }

    /// Appends `frame`'s bytes to `out`.
    pub(super) fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        let mut control = |kind: u16, flags: u8, payload: &[u8]| -> Result<(), SpdyError> {
            if payload.len() > MAX_LENGTH {
                return Err(SpdyError::TooLarge(payload.len()));
            }
            out.put_u16(0x8000 | VERSION);
            out.put_u16(kind);
            out.put_u32((u32::from(flags) << 24) | payload.len() as u32);
            out.extend_from_slice(payload);
            Ok(())
        };
        let mut payload = Vec::new();
        match frame {
            Frame::SynStream {
                stream,
                associated,
                priority,
                flags,
                headers,
            } => {
                payload.put_u32(stream & 0x7fff_ffff);
                payload.put_u32(associated & 0x7fff_ffff);
                payload.put_u8((priority & 0x7) << 5);
                payload.put_u8(0);
                payload.extend(self.header_block(headers)?);
                control(1, *flags, &payload)
            }
            Frame::SynReply {
                stream,
                flags,
                headers,
            } => {
                payload.put_u32(stream & 0x7fff_ffff);
                payload.extend(self.header_block(headers)?);
                control(2, *flags, &payload)
            }
            Frame::RstStream { stream, status } => {
                payload.put_u32(stream & 0x7fff_ffff);
                payload.put_u32(*status);
                control(3, 0, &payload)
            }
            Frame::Settings { entries } => {
                payload.put_u32(entries.len() as u32);
                for (id, value) in entries {
                    payload.put_u32(id & 0xff_ffff);
                    payload.put_u32(*value);
                }
                control(4, 0, &payload)
            }
            Frame::Ping { id } => control(6, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                payload.put_u32(last_good & 0x7fff_ffff);
                payload.put_u32(*status);
                control(7, 0, &payload)
            }
            Frame::Headers {
                stream,
                flags,
                headers,
            } => {
                payload.put_u32(stream & 0x7fff_ffff);
                payload.extend(self.header_block(headers)?);
                control(8, *flags, &payload)
            }
            Frame::WindowUpdate { stream, delta } => {
                payload.put_u32(stream & 0x7fff_ffff);
                payload.put_u32(delta & 0x7fff_ffff);
                control(9, 0, &payload)
            }
            Frame::Unknown { kind } => control(*kind, 0, &[]),
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                if data.len() > MAX_LENGTH {
                    return Err(SpdyError::TooLarge(data.len()));
                }
                out.put_u32(stream & 0x7fff_ffff);
                out.put_u32((u32::from(*flags) << 24) | data.len() as u32);
                out.extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// Takes one whole frame from the front of `buffer`; `None` until one has arrived.
    pub(super) fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buffer.len() < 8 {
            return Ok(None);
        }
        let length = (u32::from_be_bytes([0, buffer[5], buffer[6], buffer[7]])) as usize;
        if buffer.len() < 8 + length {
            return Ok(None);
        }
        let mut frame = buffer.split_to(8 + length);
        let first = frame.get_u32();
        let flags = frame.get_u8();
        frame.advance(3);
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream: first & 0x7fff_ffff,
                flags,
                data: frame.freeze(),
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = (first & 0xffff) as u16;
        let need = |frame: &BytesMut, n: usize, name: &'static str| {
            if frame.len() < n {
                Err(SpdyError::Malformed(name))
            } else {
                Ok(())
            }
        };
        Ok(Some(match kind {
            1 => {
                need(&frame, 10, "SYN_STREAM")?;
                let stream = frame.get_u32() & 0x7fff_ffff;
                let associated = frame.get_u32() & 0x7fff_ffff;
                let priority = frame.get_u8() >> 5;
                frame.advance(1);
                Frame::SynStream {
                    stream,
                    associated,
                    priority,
                    flags,
                    headers: self.headers_of(&frame)?,
                }
            }
            2 => {
                need(&frame, 4, "SYN_REPLY")?;
                let stream = frame.get_u32() & 0x7fff_ffff;
                Frame::SynReply {
                    stream,
                    flags,
                    headers: self.headers_of(&frame)?,
                }
            }
            3 => {
                need(&frame, 8, "RST_STREAM")?;
                Frame::RstStream {
                    stream: frame.get_u32() & 0x7fff_ffff,
                    status: frame.get_u32(),
                }
            }
            4 => {
                need(&frame, 4, "SETTINGS")?;
                let count = frame.get_u32() as usize;
                need(&frame, count.saturating_mul(8), "SETTINGS")?;
                let entries = (0..count)
                    .map(|_| (frame.get_u32() & 0xff_ffff, frame.get_u32()))
                    .collect();
                Frame::Settings { entries }
            }
            6 => {
                need(&frame, 4, "PING")?;
                Frame::Ping {
                    id: frame.get_u32(),
                }
            }
            7 => {
                need(&frame, 8, "GOAWAY")?;
                Frame::GoAway {
                    last_good: frame.get_u32() & 0x7fff_ffff,
                    status: frame.get_u32(),
                }
            }
            8 => {
                need(&frame, 4, "HEADERS")?;
                let stream = frame.get_u32() & 0x7fff_ffff;
                Frame::Headers {
                    stream,
                    flags,
                    headers: self.headers_of(&frame)?,
                }
            }
            9 => {
                need(&frame, 8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate {
                    stream: frame.get_u32() & 0x7fff_ffff,
                    delta: frame.get_u32() & 0x7fff_ffff,
                }
            }
            kind => Frame::Unknown { kind },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b",*,enq=0."));
        // zlib names a dictionary by its Adler-32: SPDY/3's is 0xe3c6a7c2.
        let (mut a, mut b) = (1u32, 0u32);
        for byte in &d {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[test]
    fn frames_round_trip_through_two_codecs() {
        let (mut client, mut server) = (Codec::new().unwrap(), Codec::new().unwrap());
        let frames = [
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: headers(&[
                    ("streamtype", "error"),
                    ("port", "8080"),
                    ("requestid", "0"),
                ]),
            },
            Frame::SynStream {
                stream: 3,
                associated: 0,
                priority: 2,
                flags: FLAG_FIN,
                headers: headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]),
            },
            Frame::SynReply {
                stream: 3,
                flags: 0,
                headers: Vec::new(),
            },
            Frame::Data {
                stream: 3,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"),
            },
            Frame::RstStream {
                stream: 5,
                status: status::REFUSED_STREAM,
            },
            Frame::Settings {
                entries: vec![(4, 100), (7, 65536)],
            },
            Frame::Ping { id: 7 },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
            Frame::Headers {
                stream: 1,
                flags: 0,
                headers: headers(&[("x", "y")]),
            },
            Frame::WindowUpdate {
                stream: 0,
                delta: 1 << 20,
            },
        ];
        let mut wire = BytesMut::new();
        for frame in &frames {
            client.encode(frame, &mut wire).unwrap();
        }
        // Fed a byte at a time, frames come out whole and in order.
        let mut buffer = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in wire {
            buffer.put_u8(byte);
            while let Some(frame) = server.decode(&mut buffer).unwrap() {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, frames);
    }

    #[test]
    fn frames_are_laid_out_as_the_spec_says() {
        let mut codec = Codec::new().unwrap();
        let mut wire = BytesMut::new();
        codec
            .encode(&Frame::Ping { id: 0x0102_0304 }, &mut wire)
            .unwrap();
        assert_eq!(
            &wire[..],
            b"\x80\x03\x00\x06\x00\x00\x00\x04\x01\x02\x03\x04"
        );
        wire.clear();
        codec
            .encode(
                &Frame::Data {
                    stream: 5,
                    flags: FLAG_FIN,
                    data: Bytes::from_static(b"hi"),
                },
                &mut wire,
            )
            .unwrap();
        assert_eq!(&wire[..], b"\x00\x00\x00\x05\x01\x00\x00\x02hi");
        wire.clear();
        codec
            .encode(
                &Frame::RstStream {
                    stream: 1,
                    status: status::PROTOCOL_ERROR,
                },
                &mut wire,
            )
            .unwrap();
        assert_eq!(
            &wire[..],
            b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x01"
        );
        // A header block starts a zlib stream that names SPDY/3's dictionary (FDICT, e3c6a7c2).
        wire.clear();
        codec
            .encode(
                &Frame::SynReply {
                    stream: 1,
                    flags: 0,
                    headers: Vec::new(),
                },
                &mut wire,
            )
            .unwrap();
        assert_eq!(&wire[..4], b"\x80\x03\x00\x02");
        assert_eq!(wire[12] & 0x0f, 8, "deflate");
        assert_ne!(wire[13] & 0x20, 0, "FDICT");
        assert_eq!(&wire[14..18], b"\xe3\xc6\xa7\xc2");
        // Another version is refused.
        let mut other = BytesMut::from(&b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"[..]);
        assert!(matches!(
            codec.decode(&mut other),
            Err(SpdyError::Version(2))
        ));
    }
}
