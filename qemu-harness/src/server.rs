//! A small HTTP/1.1 file server for tests that can misbehave on purpose.
//!
//! It serves registered paths from memory or from files (streamed, so multi-GiB sparse
//! images cost no memory), honours `Range: bytes=N-` with 206 (unless told to ignore
//! it), answers HEAD, records every request (method, path, Range and If-Range headers)
//! for assertions, and injects faults per path: close the connection after N body
//! bytes, stall after N bytes, advertise a length and send less, or answer a fixed
//! status. Every connection is `Connection: close`. Each fault counts down a number of
//! times, so "drop once, then behave" is expressible.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a path's bytes come from.
#[derive(Clone, Debug)]
pub enum Body {
    Bytes(Arc<Vec<u8>>),
    File(PathBuf),
}

impl Body {
    pub fn bytes(data: impl Into<Vec<u8>>) -> Body {
        Body::Bytes(Arc::new(data.into()))
    }

    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        }
    }
}

/// Faults for one path. Counts are how many responses the fault applies to.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Close the connection after this many body bytes, `times` times.
    pub drop_after: Option<(u64, u32)>,
    /// Stop sending after this many body bytes and hold the connection for the
    /// duration before closing, `times` times.
    pub stall_after: Option<(u64, Duration, u32)>,
    /// Always answer 200 with the whole body, never 206.
    pub ignore_range: bool,
    /// Advertise the full length but never send a byte past this file position.
    pub truncate_at: Option<u64>,
    /// Answer this status with an empty body instead of the file.
    pub status: Option<u16>,
}

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub body_len: usize,
}

struct Route {
    body: Body,
    faults: Faults,
}

#[derive(Default)]
struct State {
    routes: Mutex<BTreeMap<String, Route>>,
    requests: Mutex<Vec<Request>>,
    /// Bodies received by PUT, by path.
    uploads: Mutex<BTreeMap<String, Vec<u8>>>,
    stop: AtomicBool,
}

/// A running server; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    state: Arc<State>,
}

impl Server {
    /// Binds `bind` (e.g. `127.0.0.1:0` for an ephemeral port) and serves in the background.
    pub fn start(bind: &str) -> std::io::Result<Server> {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &st);
                });
            }
        });
        Ok(Server { addr, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `body` at `path` with `faults`, replacing an earlier route.
    pub fn add(&self, path: &str, body: Body, faults: Faults) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_string(), Route { body, faults });
    }

    pub fn remove(&self, path: &str) {
        self.state.routes.lock().unwrap().remove(path);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests for one path.
    pub fn requests_for(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// The last body PUT to `path`.
    pub fn upload(&self, path: &str) -> Option<Vec<u8>> {
        self.state.uploads.lock().unwrap().get(path).cloned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve(conn: TcpStream, st: &State) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body_in = Vec::new();
    if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body_in.resize(n, 0);
        reader.read_exact(&mut body_in)?;
    }
    st.requests.lock().unwrap().push(Request {
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        if_range: headers.get("if-range").cloned(),
        body_len: body_in.len(),
    });
    let mut out = conn;
    if method == "PUT" {
        st.uploads.lock().unwrap().insert(path, body_in);
        return out
            .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }

    // Take this response's faults (counting them down) and the body under the lock.
    let (body, faults, drop_after, stall_after) = {
        let mut routes = st.routes.lock().unwrap();
        let Some(route) = routes.get_mut(&path) else {
            return out.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        };
        let drop_after = match &mut route.faults.drop_after {
            Some((n, times)) if *times > 0 => {
                *times -= 1;
                Some(*n)
            }
            _ => None,
        };
        let stall_after = match &mut route.faults.stall_after {
            Some((n, d, times)) if *times > 0 => {
                *times -= 1;
                Some((*n, *d))
            }
            _ => None,
        };
        (
            route.body.clone(),
            route.faults.clone(),
            drop_after,
            stall_after,
        )
    };
    if let Some(code) = faults.status {
        let head = format!(
            "HTTP/1.1 {code} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            reason(code)
        );
        return out.write_all(head.as_bytes());
    }

    let total = body.len();
    let etag = format!("\"{total:x}-ze\"");
    let range_start = headers
        .get("range")
        .filter(|_| !faults.ignore_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n < total)
        // If-Range with a different validator means "send it all".
        .filter(|_| headers.get("if-range").is_none_or(|v| *v == etag));
    let (status, start) = match range_start {
        Some(s) => ("206 Partial Content", s),
        None => ("200 OK", 0),
    };
    let len = total - start;
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nETag: {etag}\r\nConnection: close\r\n"
    );
    if !faults.ignore_range {
        head.push_str("Accept-Ranges: bytes\r\n");
    }
    if range_start.is_some() {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{total}\r\n",
            total - 1
        ));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }

    // How many body bytes this response really sends. Drop and stall cuts are events
    // at a file position: a resumed response that starts past one runs on. A truncation
    // is the file itself ending early: nothing past it is ever sent.
    let mut limit = len;
    for n in [drop_after, stall_after.map(|s| s.0)].into_iter().flatten() {
        if start < n {
            limit = limit.min(n - start);
        }
    }
    if let Some(n) = faults.truncate_at {
        limit = limit.min(n.saturating_sub(start));
    }
    match &body {
        Body::Bytes(b) => out.write_all(&b[start as usize..(start + limit) as usize])?,
        Body::File(p) => {
            let mut f = std::fs::File::open(p)?;
            f.seek(SeekFrom::Start(start))?;
            std::io::copy(&mut f.take(limit), &mut out)?;
        }
    }
    if let Some((_, d)) = stall_after.filter(|_| limit < len) {
        out.flush()?;
        std::thread::sleep(d);
    }
    let _ = out.shutdown(Shutdown::Both);
    Ok(())
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str, path: &str, extra: &str) -> (String, Vec<u8>) {
        let addr = url.strip_prefix("http://").unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8_lossy(&all[..split]).into_owned(),
            all[split + 4..].to_vec(),
        )
    }

    #[test]
    fn serves_ranges_and_records_requests() {
        let s = Server::start("127.0.0.1:0").unwrap();
        s.add("/f", Body::bytes(b"0123456789".to_vec()), Faults::default());
        let (h, b) = get(&s.url(), "/f", "");
        assert!(h.starts_with("HTTP/1.1 200"), "{h}");
        assert_eq!(b, b"0123456789");
        let (h, b) = get(&s.url(), "/f", "Range: bytes=4-\r\n");
        assert!(h.starts_with("HTTP/1.1 206") && h.contains("Content-Range: bytes 4-9/10"));
        assert_eq!(b, b"456789");
        let (h, _) = get(&s.url(), "/nope", "");
        assert!(h.starts_with("HTTP/1.1 404"));
        let r = s.requests_for("/f");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].range.as_deref(), Some("bytes=4-"));
    }

    #[test]
    fn faults_count_down_and_cut_at_file_positions() {
        let s = Server::start("127.0.0.1:0").unwrap();
        s.add(
            "/f",
            Body::bytes(b"0123456789".to_vec()),
            Faults {
                drop_after: Some((6, 1)),
                ..Faults::default()
            },
        );
        assert_eq!(get(&s.url(), "/f", "").1, b"012345");
        assert_eq!(get(&s.url(), "/f", "").1, b"0123456789");
        s.add(
            "/t",
            Body::bytes(b"0123456789".to_vec()),
            Faults {
                truncate_at: Some(3),
                ignore_range: true,
                ..Faults::default()
            },
        );
        let (h, b) = get(&s.url(), "/t", "Range: bytes=2-\r\n");
        assert!(h.starts_with("HTTP/1.1 200") && h.contains("Content-Length: 10"));
        assert_eq!(b, b"012");
    }
}
