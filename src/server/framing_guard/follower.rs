//! The framing follower without I/O: HTTP/1 message framing followed byte by byte (heads,
//! `Content-Length` bodies, chunked bodies), a conflicting `Content-Length` renamed in a held
//! head. [`super::FramingGuard`] runs it between the socket and hyper; the fuzz target runs it
//! alone.

use super::AMBIGUOUS_FRAMING_MARKER;

const CONTENT_LENGTH: &str = "content-length";
/// Header fields parsed per head on the stack; a head with more is parsed again on the heap,
/// never waved through, since `limits.max_headers` may let hyper accept it.
pub(super) const MAX_FIELDS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    /// Collecting a request head.
    Head,
    /// Bytes left in a `Content-Length` body.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Bytes left in a chunk's data, then its CRLF.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd(u8),
    /// Trailer lines after the last chunk, until an empty line.
    Trailers,
    /// No longer inspecting.
    Off,
}

/// The framing follower, without I/O: bytes in, deliverable bytes out.
#[derive(Debug)]
pub struct FramingFollower {
    pub(super) state: State,
    /// Head bytes not yet released to hyper.
    pub(super) held: Vec<u8>,
    /// The chunk-size or trailer line read so far (already released; kept for parsing).
    pub(super) line: Vec<u8>,
    pub(super) max_head_bytes: usize,
}

impl FramingFollower {
    pub fn new(max_head_bytes: usize) -> Self {
        Self {
            state: State::Head,
            held: Vec::new(),
            line: Vec::new(),
            max_head_bytes,
        }
    }

    /// Head bytes held back from hyper; for tests and fuzzing.
    pub fn held_bytes(&self) -> &[u8] {
        &self.held
    }

    /// Whether the follower has stopped inspecting.
    pub fn is_off(&self) -> bool {
        self.state == State::Off && self.held.is_empty()
    }

    /// Feeds `input`; appends every byte that may now go to hyper to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.state {
                State::Off => {
                    out.append(&mut self.held);
                    out.extend_from_slice(input);
                    return;
                }
                State::Head => {
                    self.held.extend_from_slice(input);
                    input = &[];
                    if let Some(after_head) = self.try_complete_head(out) {
                        // The next message (or this one's body) began in the same read.
                        self.feed(&after_head, out);
                        return;
                    }
                }
                State::Body(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Body(left)
                    };
                }
                State::ChunkData(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(left)
                    };
                }
                State::ChunkEnd(left) => {
                    let take = usize::from(left).min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = left - take as u8;
                    self.state = if left == 0 {
                        State::ChunkSize
                    } else {
                        State::ChunkEnd(left)
                    };
                }
                State::ChunkSize | State::Trailers => {
                    let Some(newline) = input.iter().position(|b| *b == b'\n') else {
                        self.line.extend_from_slice(input);
                        out.extend_from_slice(input);
                        if self.line.len() > self.max_head_bytes {
                            self.state = State::Off;
                            self.line.clear();
                        }
                        return;
                    };
                    self.line.extend_from_slice(&input[..=newline]);
                    out.extend_from_slice(&input[..=newline]);
                    input = &input[newline + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.state = self.after_line(&line);
                }
            }
        }
    }

    /// The state after a complete chunk-size or trailer line.
    fn after_line(&self, line: &[u8]) -> State {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        if self.state == State::Trailers {
            return if text.is_empty() {
                State::Head
            } else {
                State::Trailers
            };
        }
        let size = text.split(';').next().unwrap_or("").trim();
        match u64::from_str_radix(size, 16) {
            Ok(0) => State::Trailers,
            Ok(size) => State::ChunkData(size),
            Err(_) => State::Off,
        }
    }

    /// Parses the held head; when it is complete, marks conflicting framing, releases the head
    /// to `out` and returns the bytes that followed it, if any.
    fn try_complete_head(&mut self, out: &mut Vec<u8>) -> Option<Vec<u8>> {
        // Uninitialised slots: initialising 128 of them (4 KiB) cost more than the parse.
        let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
        let mut parsed = parse_framing(&self.held, &mut fields);
        if matches!(parsed, Err(httparse::Error::TooManyHeaders)) {
            // Rare: room for as many fields as the head has lines (each ends in a line feed),
            // left uninitialised like the stack's.
            let lines = self.held.iter().filter(|byte| **byte == b'\n').count();
            let mut many = Vec::with_capacity(lines + 1);
            parsed = parse_framing(&self.held, many.spare_capacity_mut());
        }
        let Framing {
            head_len,
            length_fields,
            content_length,
            chunked,
            transfer_encoding,
        } = match parsed {
            Ok(Some(framing)) => framing,
            Ok(None) if self.held.len() <= self.max_head_bytes => return None,
            // Too big, malformed or not HTTP/1 (the HTTP/2 preface): hyper decides.
            _ => {
                self.state = State::Off;
                out.append(&mut self.held);
                return None;
            }
        };
        let conflicting =
            !length_fields.is_empty() && (transfer_encoding || length_fields.len() > 1);
        self.state = if conflicting {
            // The handler refuses this request and closes the connection; stop following.
            let renamed = if transfer_encoding {
                &length_fields[..]
            } else {
                &length_fields[1..]
            };
            for offset in renamed {
                self.held[*offset..*offset + CONTENT_LENGTH.len()]
                    .copy_from_slice(AMBIGUOUS_FRAMING_MARKER.as_bytes());
            }
            State::Off
        } else if transfer_encoding {
            if chunked {
                State::ChunkSize
            } else {
                State::Off
            }
        } else {
            match (length_fields.is_empty(), content_length) {
                (true, _) | (false, Some(0)) => State::Head,
                (false, Some(length)) => State::Body(length),
                // An unparseable length: hyper answers 400.
                (false, None) => State::Off,
            }
        };
        let after_head = self.held.split_off(head_len);
        out.append(&mut self.held);
        // Released, not kept: an idle keep-alive connection holds no head buffer.
        self.held = Vec::new();
        (!after_head.is_empty()).then_some(after_head)
    }
}

/// What a complete head says about its message's framing.
struct Framing {
    head_len: usize,
    /// Offsets of the `Content-Length` field names within the head.
    length_fields: Vec<usize>,
    /// The last `Content-Length` value, when it parses.
    content_length: Option<u64>,
    /// Whether `chunked` is the last transfer coding.
    chunked: bool,
    transfer_encoding: bool,
}

/// Parses `head` with room for `fields.len()` header fields; `Ok(None)` while incomplete.
fn parse_framing<'head>(
    head: &'head [u8],
    fields: &mut [std::mem::MaybeUninit<httparse::Header<'head>>],
) -> Result<Option<Framing>, httparse::Error> {
    let mut request = httparse::Request::new(&mut []);
    let httparse::Status::Complete(head_len) = request.parse_with_uninit_headers(head, fields)?
    else {
        return Ok(None);
    };
    let base = head.as_ptr() as usize;
    let mut framing = Framing {
        head_len,
        length_fields: Vec::new(),
        content_length: None,
        chunked: false,
        transfer_encoding: false,
    };
    for field in request.headers.iter() {
        if field.name.eq_ignore_ascii_case(CONTENT_LENGTH) {
            framing
                .length_fields
                .push(field.name.as_ptr() as usize - base);
            framing.content_length = std::str::from_utf8(field.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            framing.transfer_encoding = true;
            framing.chunked = std::str::from_utf8(field.value).is_ok_and(|v| {
                v.rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
            });
        }
    }
    Ok(Some(framing))
}
