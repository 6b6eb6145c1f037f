//! Small helpers shared by unit tests, integration tests, fuzz harness tests and benches.
//! Not part of the product's API.

/// xorshift64*: deterministic pseudo-random numbers without a `rand` dependency, so a failing
/// run can be replayed from its printed seed.
#[derive(Clone, Debug)]
pub struct XorShift64(pub u64);

impl XorShift64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % (n as u64).max(1)) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Copies the directory tree `from` into `to` (created if missing): regular files and
/// directories, what a killed process leaves of a data directory, for crash tests.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A loopback connection whose far end, on a thread, sends `data` in writes of `piece_bytes`
/// and closes (earlier if the near end closed first); the near end reads with a 10 s timeout.
/// Join the thread after dropping the stream.
pub fn loopback_sending(
    data: Vec<u8>,
    piece_bytes: usize,
) -> (std::net::TcpStream, std::thread::JoinHandle<()>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let sender = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        for piece in data.chunks(piece_bytes.max(1)) {
            if s.write_all(piece).is_err() {
                break;
            }
        }
    });
    let socket = std::net::TcpStream::connect(addr).expect("connect loopback");
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("read timeout");
    (socket, sender)
}
