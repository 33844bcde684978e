//! Just enough HTTP/1.1 for Docker's plugin protocol and `/metrics`: requests (a method,
//! a path, a body by `Content-Length` or chunked) read one after another
//! from a kept-alive connection, and responses with a length; and, as a
//! client of Docker's API, one response read to its end. Sizes are
//! bounded: anything larger, or malformed, is an error the caller answers
//! with 400 and a closed connection.

use std::io::{self, BufRead, Read as _, Write};

/// Request line and headers together.
const MAX_HEAD: usize = 16 * 1024;
/// A body; Docker's largest requests are a few hundred bytes.
const MAX_BODY: usize = 1024 * 1024;

/// One request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    /// The client asked to close after the answer (or spoke HTTP/1.0).
    pub close: bool,
}

/// Why no request could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection between requests.
    #[error("connection closed")]
    Closed,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request too large")]
    TooLarge,
    #[error("reading the request")]
    Io(#[from] io::Error),
}

/// Reads one line (CRLF or LF), counting it against `budget`.
fn line(r: &mut impl BufRead, budget: &mut usize) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(ReadError::TooLarge);
    }
    *budget -= n;
    if buf.last() != Some(&b'\n') {
        return Err(ReadError::Malformed("unterminated line"));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| ReadError::Malformed("not UTF-8"))
}

/// Reads the next request; `Closed` when the peer hung up cleanly first.
pub fn read_request(r: &mut impl BufRead) -> Result<Request, ReadError> {
    let mut budget = MAX_HEAD;
    let first = line(r, &mut budget)?.ok_or(ReadError::Closed)?;
    let mut parts = first.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed("request line"));
    };
    let close_by_default = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Malformed("HTTP version")),
    };
    let head = read_headers(r, &mut budget)?;
    let close = head.close.unwrap_or(close_by_default);
    let body = read_body(r, &head, false)?;
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        body,
        close,
    })
}

/// What the headers say of the body and the connection.
struct Head {
    length: Option<usize>,
    chunked: bool,
    /// `Connection: close` (true) or `keep-alive` (false), if given.
    close: Option<bool>,
}

/// Reads headers up to the empty line.
fn read_headers(r: &mut impl BufRead, budget: &mut usize) -> Result<Head, ReadError> {
    let mut head = Head {
        length: None,
        chunked: false,
        close: None,
    };
    loop {
        let header = line(r, budget)?.ok_or(ReadError::Malformed("headers cut short"))?;
        if header.is_empty() {
            return Ok(head);
        }
        let (name, value) = header
            .split_once(':')
            .ok_or(ReadError::Malformed("header"))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| ReadError::Malformed("Content-Length"))?;
                if head.length.is_some_and(|l| l != n) {
                    return Err(ReadError::Malformed("two Content-Lengths"));
                }
                head.length = Some(n);
            }
            "transfer-encoding" => {
                if !value.eq_ignore_ascii_case("chunked") {
                    return Err(ReadError::Malformed("Transfer-Encoding"));
                }
                head.chunked = true;
            }
            "connection" => {
                if value.eq_ignore_ascii_case("close") {
                    head.close = Some(true);
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    head.close = Some(false);
                }
            }
            _ => {}
        }
    }
}

/// The body `head` announces; with neither a length nor chunks, none for
/// a request and the rest of the connection for a response.
fn read_body(r: &mut impl BufRead, head: &Head, response: bool) -> Result<Vec<u8>, ReadError> {
    match (head.chunked, head.length) {
        (true, Some(_)) => Err(ReadError::Malformed("chunked with a length")),
        (true, None) => read_chunked(r),
        (false, Some(n)) if n > MAX_BODY => Err(ReadError::TooLarge),
        (false, Some(n)) => {
            let mut body = vec![0; n];
            r.read_exact(&mut body)?;
            Ok(body)
        }
        (false, None) if response => {
            let mut body = Vec::new();
            r.take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
            if body.len() > MAX_BODY {
                return Err(ReadError::TooLarge);
            }
            Ok(body)
        }
        (false, None) => Ok(Vec::new()),
    }
}

/// Reads a response: its status code and body.
pub fn read_response(r: &mut impl BufRead) -> Result<(u16, Vec<u8>), ReadError> {
    let mut budget = MAX_HEAD;
    let first = line(r, &mut budget)?.ok_or(ReadError::Closed)?;
    let mut parts = first.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(ReadError::Malformed("status line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Malformed("HTTP version"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| ReadError::Malformed("status code"))?;
    let head = read_headers(r, &mut budget)?;
    Ok((status, read_body(r, &head, true)?))
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let mut budget = MAX_HEAD;
        let size_line = line(r, &mut budget)?.ok_or(ReadError::Malformed("chunk cut short"))?;
        let hex = size_line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(hex, 16).map_err(|_| ReadError::Malformed("chunk size"))?;
        if body.len() + size > MAX_BODY {
            return Err(ReadError::TooLarge);
        }
        if size == 0 {
            // Trailers, up to the empty line.
            while !line(r, &mut budget)?
                .ok_or(ReadError::Malformed("trailers cut short"))?
                .is_empty()
            {}
            return Ok(body);
        }
        let at = body.len();
        body.resize(at + size, 0);
        r.read_exact(&mut body[at..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(ReadError::Malformed("chunk end"));
        }
    }
}

/// Writes a response with `body` of `content_type`.
pub fn write_response(
    w: &mut impl Write,
    status: u16,
    content_type: &str,
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::*;

    fn read_all(input: &[u8]) -> Vec<Result<Request, String>> {
        let mut r = BufReader::new(input);
        let mut out = Vec::new();
        loop {
            match read_request(&mut r) {
                Err(ReadError::Closed) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
                Ok(req) => out.push(Ok(req)),
            }
        }
    }

    #[test]
    fn requests_one_after_another_on_one_connection() {
        let input = b"POST /Plugin.Activate HTTP/1.1\r\nHost: \r\nContent-Length: 0\r\n\r\n\
POST /NetworkDriver.Join HTTP/1.1\r\nContent-Length: 7\r\n\r\n{\"a\":1}\
POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"b\r\n4;ext\r\n\":2}\r\n0\r\nT: v\r\n\r\n\
POST /last HTTP/1.0\r\n\r\n";
        let got = read_all(input);
        let ok: Vec<(String, String, bool)> = got
            .iter()
            .map(|r| {
                let r = r.as_ref().expect("valid");
                (
                    r.path.clone(),
                    String::from_utf8_lossy(&r.body).into(),
                    r.close,
                )
            })
            .collect();
        assert_eq!(
            ok,
            [
                ("/Plugin.Activate".into(), String::new(), false),
                ("/NetworkDriver.Join".into(), "{\"a\":1}".into(), false),
                ("/x".into(), "{\"b\":2}".into(), false),
                ("/last".into(), String::new(), true),
            ]
        );
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        let cases: [(&[u8], &str); 8] = [
            (b"POST /x\r\n\r\n", "request line"),
            (b"POST /x HTTP/2\r\n\r\n", "HTTP version"),
            (b"POST /x HTTP/1.1\r\nbroken\r\n\r\n", "header"),
            (
                b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                "Content-Length",
            ),
            (
                b"POST /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
                "too large",
            ),
            (
                b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                "Transfer-Encoding",
            ),
            (
                b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "chunk size",
            ),
            (
                b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
                "reading",
            ),
        ];
        for (input, want) in cases {
            let got = read_all(input);
            let err = got
                .last()
                .and_then(|r| r.as_ref().err())
                .unwrap_or_else(|| panic!("{input:?} accepted"));
            assert!(err.contains(want), "{input:?}: {err}");
        }
        let mut huge = b"POST /x HTTP/1.1\r\n".to_vec();
        for i in 0..2000 {
            huge.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(10)).as_bytes());
        }
        assert!(
            read_all(&huge)
                .last()
                .is_some_and(|r| r.as_ref().is_err_and(|e| e.contains("too large")))
        );
    }

    #[test]
    fn responses_carry_their_length() {
        let mut out = Vec::new();
        write_response(&mut out, 200, "application/json", b"{}", false).expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }
}
