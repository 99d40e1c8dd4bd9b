//! A free local port and a minimal HTTP GET, for the daemon's metrics and health endpoints.

use std::io::{Read, Write};
use std::time::Duration;

use super::wait::wait_until_blocking;

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GETs `path` and returns the status code and body, waiting for the server to listen.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = wait_until_blocking(&format!("a server listening on {port}"), Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|err| err.to_string())
    });
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, response.split_once("\r\n\r\n").unwrap().1.to_string())
}
