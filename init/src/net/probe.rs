//! The server probe: can we reach `http://ze.server:ze.port/`? Any HTTP response, 404
//! included, means yes; a TCP failure or silence means no. The two are told apart in the
//! log, because "connection refused" and "no route to host" send an operator to
//! different places.

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The probe's per-attempt timeout (SPEC: 2 s).
pub const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The server answered HTTP; the status line.
    Answered(String),
    /// TCP did not connect: the OS error or a timeout.
    Unreachable(String),
    /// TCP connected but no HTTP answer came.
    NoHttp(String),
}

impl Probe {
    pub fn answered(&self) -> bool {
        matches!(self, Probe::Answered(_))
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Answered(s) => write!(f, "HTTP answered ({s})"),
            Probe::Unreachable(s) => write!(f, "TCP unreachable ({s})"),
            Probe::NoHttp(s) => write!(f, "TCP connected but no HTTP answer ({s})"),
        }
    }
}

/// One attempt. With `device`, the connection is bound to that interface
/// (SO_BINDTODEVICE), so it tests exactly that interface's lease and routes.
pub fn probe_once(server: SocketAddrV4, device: Option<&str>, timeout: Duration) -> Probe {
    use socket2::{Domain, Socket, Type};
    let started = Instant::now();
    let sock = match Socket::new(Domain::IPV4, Type::STREAM, None) {
        Ok(s) => s,
        Err(e) => return Probe::Unreachable(format!("socket: {e}")),
    };
    if let Some(dev) = device
        && let Err(e) = sock.bind_device(Some(dev.as_bytes()))
    {
        return Probe::Unreachable(format!("binding to {dev}: {e}"));
    }
    if let Err(e) = sock.connect_timeout(&SocketAddr::V4(server).into(), timeout) {
        return Probe::Unreachable(match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                format!("no answer within {} s", timeout.as_secs_f64())
            }
            _ => e.to_string(),
        });
    }
    let mut stream: std::net::TcpStream = sock.into();
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(100));
    let _ = stream.set_read_timeout(Some(left));
    let _ = stream.set_write_timeout(Some(left));
    let req = format!(
        "HEAD / HTTP/1.0\r\nHost: {}\r\nUser-Agent: ze-install-probe\r\n\r\n",
        server.ip()
    );
    if let Err(e) = stream.write_all(req.as_bytes()) {
        return Probe::NoHttp(format!("sending the request: {e}"));
    }
    let mut buf = [0u8; 128];
    let mut n = 0;
    while n < buf.len() {
        match stream.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if buf[..n].contains(&b'\n') {
                    break;
                }
            }
            Err(e) => {
                if n == 0 {
                    return Probe::NoHttp(match e.kind() {
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                            format!("silent for {} s", timeout.as_secs_f64())
                        }
                        _ => e.to_string(),
                    });
                }
                break;
            }
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let line = head.lines().next().unwrap_or("").trim().to_string();
    if line.starts_with("HTTP/") {
        Probe::Answered(line)
    } else if n == 0 {
        Probe::NoHttp("the connection closed without a reply".into())
    } else {
        Probe::NoHttp(format!("not an HTTP reply: {line:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    fn local(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    #[test]
    fn a_404_is_reachable() {
        let s = qemu_harness::server::Server::start("127.0.0.1:0").unwrap();
        let p = probe_once(local(s.port()), None, TIMEOUT);
        assert_eq!(p, Probe::Answered("HTTP/1.1 404 Not Found".into()));
        assert_eq!(s.requests()[0].method, "HEAD");
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        // Bind then drop to get a port nobody listens on.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = probe_once(local(port), None, TIMEOUT);
        assert!(
            matches!(&p, Probe::Unreachable(e) if e.contains("refused")),
            "{p:?}"
        );
    }

    #[test]
    fn a_silent_listener_is_not_http() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let started = Instant::now();
        let p = probe_once(local(port), None, Duration::from_millis(300));
        assert!(
            matches!(&p, Probe::NoHttp(e) if e.contains("silent")),
            "{p:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(l);
    }

    #[test]
    fn a_non_http_reply_is_not_http() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            c.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
        });
        let p = probe_once(local(port), None, TIMEOUT);
        assert!(
            matches!(&p, Probe::NoHttp(e) if e.contains("SSH-2.0")),
            "{p:?}"
        );
        t.join().unwrap();
    }
}
