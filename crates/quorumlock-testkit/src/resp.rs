//! A blocking RESP2 client of a few dozen lines, for the kit's own cluster administration
//! (`CLUSTER ...`, `MIGRATE`, `INFO`). The kit does not depend on a Redis client crate, so that it
//! can test any of them, and the commands it sends are few and simple.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::cluster::Error;

/// A reply from a server, as RESP2 has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and other status replies.
    Status(String),
    /// `-ERR ...`, `-MOVED ...`, `-ASK ...`: the whole line without the `-`.
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$n`; `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*n`; `None` for the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text, for status, error and bulk replies (lossy UTF-8).
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(s) | Reply::Error(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Long enough for a `MIGRATE` of a batch on a loaded machine, short enough that a paused
/// (SIGSTOPped) server fails a call instead of hanging a test.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
    port: u16,
}

impl Conn {
    /// Connects to 127.0.0.1:`port` and authenticates as the default user when `password` is set.
    pub(crate) fn open(port: u16, password: Option<&str>) -> Result<Self, Error> {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
            .map_err(|e| Error::new(format!("connect 127.0.0.1:{port}: {e}")))?;
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_nodelay(true);
        let mut conn = Self {
            reader: BufReader::new(stream),
            port,
        };
        if let Some(pw) = password {
            conn.ok(&[b"AUTH", pw.as_bytes()])?;
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply; an error reply is an `Ok(Reply::Error)`.
    pub(crate) fn call(&mut self, args: &[&[u8]]) -> Result<Reply, Error> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        let port = self.port;
        let io = |e: std::io::Error| Error::new(format!("127.0.0.1:{port}: {e}"));
        self.reader.get_mut().write_all(&out).map_err(io)?;
        read_reply(&mut self.reader).map_err(io)
    }

    /// [`call`](Self::call), with an error reply turned into an `Err` that names the command.
    pub(crate) fn ok(&mut self, args: &[&[u8]]) -> Result<Reply, Error> {
        match self.call(args)? {
            Reply::Error(e) => Err(Error::new(format!(
                "127.0.0.1:{}: {}: {e}",
                self.port,
                String::from_utf8_lossy(&args.join(&b' ')),
            ))),
            reply => Ok(reply),
        }
    }

    /// [`ok`](Self::ok) for commands whose reply is text (`INFO`, `CLUSTER NODES`, ...).
    pub(crate) fn text(&mut self, args: &[&str]) -> Result<String, Error> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let reply = self.ok(&args)?;
        reply
            .text()
            .ok_or_else(|| Error::new(format!("127.0.0.1:{}: expected text, got {reply:?}", self.port)))
    }
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("truncated reply {:?}", String::from_utf8_lossy(&line)),
        ));
    }
    let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let int = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad length {s:?}")))
    };
    Ok(match line[0] {
        b'+' => Reply::Status(body),
        b'-' => Reply::Error(body),
        b':' => Reply::Int(int(&body)?),
        b'$' => match int(&body)? {
            n if n < 0 => Reply::Bulk(None),
            n => {
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(buf))
            }
        },
        b'*' => match int(&body)? {
            n if n < 0 => Reply::Array(None),
            n => Reply::Array(Some((0..n).map(|_| read_reply(r)).collect::<Result<_, _>>()?)),
        },
        other => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unknown reply type {:?}", other as char),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_replies() {
        let wire = b"*3\r\n:1\r\n$3\r\nfoo\r\n*2\r\n$-1\r\n-ASK 1 127.0.0.1:1\r\n";
        let reply = read_reply(&mut &wire[..]).unwrap();
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Int(1),
                Reply::Bulk(Some(b"foo".to_vec())),
                Reply::Array(Some(vec![
                    Reply::Bulk(None),
                    Reply::Error("ASK 1 127.0.0.1:1".into())
                ])),
            ]))
        );
    }
}
