//! FUSE-over-io_uring byte layouts (include/uapi/linux/fuse.h, protocol 7.42; kernel ≥ 6.14),
//! and the pure conversions between a ring entry and the contiguous `/dev/fuse` message that
//! fuse-backend-rs's `Server` decodes and encodes. No I/O here.
//!
//! A ring entry is two user buffers registered with the kernel:
//! - the *header* buffer (`struct fuse_uring_req_header`, [`HEADER_BYTES`]): 128 bytes of
//!   `fuse_in_header` (request) / `fuse_out_header` (reply), 128 bytes of the per-opcode
//!   header (`fuse_write_in`, …), then `struct fuse_uring_ent_in_out` (commit id, payload size);
//! - the *payload* buffer: the request's remaining arguments (names, write data) and the
//!   reply's arguments (everything after `fuse_out_header`).

use std::fmt;

/// `FUSE_OVER_IO_URING` (bit 41 of the 64-bit INIT flags) as a bit of `flags2`.
pub const FLAGS2_OVER_IO_URING: u32 = 1 << (41 - 32);
/// `FUSE_INIT_EXT`: `flags2` is valid (bit 30 of `flags`).
pub const FLAGS_INIT_EXT: u32 = 1 << 30;

/// `enum fuse_uring_cmd`.
pub const CMD_REGISTER: u32 = 1;
pub const CMD_COMMIT_AND_FETCH: u32 = 2;

/// `FUSE_INIT` opcode.
pub const OPCODE_INIT: u32 = 26;

pub const IN_HEADER_BYTES: usize = 40;
pub const OUT_HEADER_BYTES: usize = 16;
/// `FUSE_URING_IN_OUT_HEADER_SZ`.
const IN_OUT_BYTES: usize = 128;
/// `FUSE_URING_OP_IN_OUT_SZ`: room for the per-opcode header.
pub const OP_IN_BYTES_MAX: usize = 128;
const OP_IN_OFFSET: usize = IN_OUT_BYTES;
const ENT_IN_OUT_OFFSET: usize = IN_OUT_BYTES + OP_IN_BYTES_MAX;
/// `sizeof(struct fuse_uring_req_header)`.
pub const HEADER_BYTES: usize = ENT_IN_OUT_OFFSET + 32;

/// Bytes of command data in a 128-byte SQE (`sqe->cmd`).
pub const SQE_CMD_BYTES: usize = 80;

/// A ring entry whose contents cannot be turned into a request.
#[derive(Debug, PartialEq, Eq)]
pub enum AbiError {
    /// `fuse_in_header.len` disagrees with the payload size the kernel reported.
    BadLength { len_bytes: u32, payload_bytes: u32 },
    /// The request claims more bytes than the payload buffer or the buffer it is copied into
    /// holds.
    TooLarge {
        len_bytes: usize,
        payload_bytes: usize,
        payload_buffer_bytes: usize,
        out_bytes: usize,
    },
}

impl fmt::Display for AbiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbiError::BadLength {
                len_bytes,
                payload_bytes,
            } => write!(
                f,
                "ring entry: request length {len_bytes} bytes does not fit a {IN_HEADER_BYTES}-byte \
                 header + ≤{OP_IN_BYTES_MAX}-byte op header + {payload_bytes}-byte payload"
            ),
            AbiError::TooLarge {
                len_bytes,
                payload_bytes,
                payload_buffer_bytes,
                out_bytes,
            } => write!(
                f,
                "ring entry: request of {len_bytes} bytes ({payload_bytes}-byte payload) exceeds \
                 the {payload_buffer_bytes}-byte payload buffer or the {out_bytes}-byte request buffer"
            ),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// `struct fuse_uring_cmd_req` in the SQE's command area: which queue, and for
/// COMMIT_AND_FETCH which request is answered (its `unique`).
pub fn cmd_req(qid: u16, commit_id: u64) -> [u8; SQE_CMD_BYTES] {
    let mut cmd = [0u8; SQE_CMD_BYTES];
    // flags (u64) stay 0.
    cmd[8..16].copy_from_slice(&commit_id.to_le_bytes());
    cmd[16..18].copy_from_slice(&qid.to_le_bytes());
    cmd
}

/// What the kernel wrote into a ring entry's header buffer with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingRequest {
    /// `fuse_uring_ent_in_out.commit_id`: echo it in COMMIT_AND_FETCH.
    pub commit_id: u64,
    /// `fuse_in_header.unique`: echo it in `fuse_out_header.unique`.
    pub unique: u64,
    /// `fuse_in_header.len`: header + op header + payload.
    pub len_bytes: u32,
    /// Bytes of arguments in the payload buffer.
    pub payload_bytes: u32,
}

impl RingRequest {
    pub fn parse(header: &[u8; HEADER_BYTES]) -> RingRequest {
        RingRequest {
            commit_id: u64_at(header, ENT_IN_OUT_OFFSET + 8),
            unique: u64_at(header, 8),
            len_bytes: u32_at(header, 0),
            payload_bytes: u32_at(header, ENT_IN_OUT_OFFSET + 16),
        }
    }

    /// Size of the per-opcode header the kernel put in `op_in` (0 for opcodes without one).
    pub fn op_in_bytes(&self) -> Result<usize, AbiError> {
        let bad = AbiError::BadLength {
            len_bytes: self.len_bytes,
            payload_bytes: self.payload_bytes,
        };
        let rest = (self.len_bytes as usize)
            .checked_sub(IN_HEADER_BYTES + self.payload_bytes as usize)
            .ok_or(bad)?;
        if rest > OP_IN_BYTES_MAX {
            return Err(AbiError::BadLength {
                len_bytes: self.len_bytes,
                payload_bytes: self.payload_bytes,
            });
        }
        Ok(rest)
    }
}

/// Lays a ring request out as `/dev/fuse` would deliver it — `fuse_in_header`, the op header,
/// then the payload — at the start of `out`. Returns its length (`fuse_in_header.len`).
pub fn assemble_request(
    header: &[u8; HEADER_BYTES],
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, AbiError> {
    let req = RingRequest::parse(header);
    let op_bytes = req.op_in_bytes()?;
    let payload_bytes = req.payload_bytes as usize;
    let len = req.len_bytes as usize;
    if len > out.len() || payload_bytes > payload.len() {
        return Err(AbiError::TooLarge {
            len_bytes: len,
            payload_bytes,
            payload_buffer_bytes: payload.len(),
            out_bytes: out.len(),
        });
    }
    out[..IN_HEADER_BYTES].copy_from_slice(&header[..IN_HEADER_BYTES]);
    let op_end = IN_HEADER_BYTES + op_bytes;
    out[IN_HEADER_BYTES..op_end].copy_from_slice(&header[OP_IN_OFFSET..OP_IN_OFFSET + op_bytes]);
    out[op_end..len].copy_from_slice(&payload[..payload_bytes]);
    Ok(len)
}

/// A reply as fuse-backend-rs encodes it for `/dev/fuse`: `fuse_out_header` then arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutHeader {
    pub len_bytes: u32,
    pub error: i32,
    pub unique: u64,
}

impl OutHeader {
    pub fn parse(bytes: &[u8; OUT_HEADER_BYTES]) -> OutHeader {
        OutHeader {
            len_bytes: u32_at(bytes, 0),
            error: u32_at(bytes, 4) as i32,
            unique: u64_at(bytes, 8),
        }
    }

    pub fn encode(&self) -> [u8; OUT_HEADER_BYTES] {
        let mut b = [0u8; OUT_HEADER_BYTES];
        b[0..4].copy_from_slice(&self.len_bytes.to_le_bytes());
        b[4..8].copy_from_slice(&self.error.to_le_bytes());
        b[8..16].copy_from_slice(&self.unique.to_le_bytes());
        b
    }

    /// An error reply to `unique` (`errno` positive, as in `libc::EIO`).
    pub fn error(unique: u64, errno: i32) -> OutHeader {
        OutHeader {
            len_bytes: OUT_HEADER_BYTES as u32,
            error: -errno,
            unique,
        }
    }
}

/// Writes a reply into a ring entry's header buffer: `fuse_out_header` in `in_out`, and the
/// size of the arguments already placed in the payload buffer.
pub fn put_reply(header: &mut [u8; HEADER_BYTES], out: &OutHeader) {
    header[..OUT_HEADER_BYTES].copy_from_slice(&out.encode());
    let payload_bytes = (out.len_bytes as usize).saturating_sub(OUT_HEADER_BYTES) as u32;
    put_u32(header, ENT_IN_OUT_OFFSET + 16, payload_bytes);
}

/// True if a `FUSE_INIT` request (`fuse_in_header` + `fuse_init_in`) offers
/// `FUSE_OVER_IO_URING` — the kernel does so only when `enable_uring` is on.
pub fn init_offers_uring(request: &[u8]) -> bool {
    const FLAGS: usize = IN_HEADER_BYTES + 12;
    const FLAGS2: usize = IN_HEADER_BYTES + 16;
    if request.len() < FLAGS2 + 4 || u32_at(request, 4) != OPCODE_INIT {
        return false;
    }
    u32_at(request, FLAGS) & FLAGS_INIT_EXT != 0
        && u32_at(request, FLAGS2) & FLAGS2_OVER_IO_URING != 0
}

/// Turns `FUSE_OVER_IO_URING` on in an encoded successful INIT reply (`fuse_out_header` +
/// `fuse_init_out`); fuse-backend-rs 0.14 does not know the flag. False if the reply is an
/// error or too short to carry `flags2` (protocol < 7.23).
pub fn enable_uring_in_init_reply(reply: &mut [u8]) -> bool {
    const FLAGS: usize = OUT_HEADER_BYTES + 12;
    const FLAGS2: usize = OUT_HEADER_BYTES + 32;
    if reply.len() < FLAGS2 + 4 || u32_at(reply, 4) != 0 {
        return false;
    }
    put_u32(reply, FLAGS, u32_at(reply, FLAGS) | FLAGS_INIT_EXT);
    put_u32(reply, FLAGS2, u32_at(reply, FLAGS2) | FLAGS2_OVER_IO_URING);
    true
}

/// The CPUs of a list such as `/sys/devices/system/cpu/possible` ("0-3,5"), ascending. The
/// kernel makes one ring queue per possible CPU, and a ring serves requests only once every
/// queue has an entry.
pub fn cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let a: usize = part.parse().ok()?;
                (a, a)
            }
        };
        if b < a || b - a >= 1 << 16 {
            return None;
        }
        cpus.extend(a..=b);
    }
    cpus.sort_unstable();
    cpus.dedup();
    (!cpus.is_empty()).then_some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_with(len: u32, unique: u64, op: &[u8], payload_bytes: u32, commit: u64) -> [u8; 288] {
        let mut h = [0u8; HEADER_BYTES];
        put_u32(&mut h, 0, len);
        put_u32(&mut h, 4, 16); // FUSE_WRITE
        h[8..16].copy_from_slice(&unique.to_le_bytes());
        h[OP_IN_OFFSET..OP_IN_OFFSET + op.len()].copy_from_slice(op);
        h[ENT_IN_OUT_OFFSET + 8..ENT_IN_OUT_OFFSET + 16].copy_from_slice(&commit.to_le_bytes());
        put_u32(&mut h, ENT_IN_OUT_OFFSET + 16, payload_bytes);
        h
    }

    #[test]
    fn header_size_matches_the_kernel() {
        assert_eq!(HEADER_BYTES, 288);
    }

    #[test]
    fn a_write_request_is_laid_out_as_dev_fuse_delivers_it() {
        let op = [7u8; 40]; // fuse_write_in
        let data = [9u8; 4096];
        let len = (IN_HEADER_BYTES + op.len() + data.len()) as u32;
        let h = header_with(len, 77, &op, data.len() as u32, 77);
        let mut payload = vec![0u8; 1 << 20];
        payload[..data.len()].copy_from_slice(&data);
        let mut out = vec![0u8; 4096 + (1 << 20)];
        let n = assemble_request(&h, &payload, &mut out).unwrap();
        assert_eq!(n, len as usize, "assembled length");
        assert_eq!(&out[..IN_HEADER_BYTES], &h[..IN_HEADER_BYTES]);
        assert_eq!(&out[40..80], &op[..]);
        assert_eq!(&out[80..n], &data[..]);
        let req = RingRequest::parse(&h);
        assert_eq!(
            (req.commit_id, req.unique, req.payload_bytes),
            (77, 77, 4096)
        );
    }

    #[test]
    fn a_request_without_op_header_keeps_its_payload_after_the_in_header() {
        let name = b"db-wal\0";
        let len = (IN_HEADER_BYTES + name.len()) as u32;
        let h = header_with(len, 5, &[], name.len() as u32, 5);
        let mut out = vec![0u8; 256];
        let n = assemble_request(&h, name, &mut out).unwrap();
        assert_eq!(&out[40..n], name);
    }

    #[test]
    fn inconsistent_lengths_are_errors_not_panics() {
        // len smaller than header + payload.
        let h = header_with(50, 1, &[], 100, 1);
        let e = assemble_request(&h, &[0u8; 200], &mut [0u8; 400]).unwrap_err();
        assert_eq!(
            e,
            AbiError::BadLength {
                len_bytes: 50,
                payload_bytes: 100
            }
        );
        // op header claimed larger than op_in.
        let h = header_with(40 + 200, 1, &[], 0, 1);
        assert!(assemble_request(&h, &[], &mut [0u8; 400]).is_err());
        // Does not fit the output buffer.
        let h = header_with(40 + 8 + 100, 1, &[1; 8], 100, 1);
        let e = assemble_request(&h, &[0u8; 100], &mut [0u8; 64]).unwrap_err();
        assert!(
            matches!(e, AbiError::TooLarge { len_bytes: 148, .. }),
            "{e}"
        );
    }

    #[test]
    fn reply_goes_to_in_out_and_payload_size_to_ent_in_out() {
        let mut h = [0u8; HEADER_BYTES];
        let out = OutHeader {
            len_bytes: 16 + 4096,
            error: 0,
            unique: 99,
        };
        put_reply(&mut h, &out);
        assert_eq!(OutHeader::parse(h[..16].try_into().unwrap()), out);
        assert_eq!(u32_at(&h, ENT_IN_OUT_OFFSET + 16), 4096);
        put_reply(&mut h, &OutHeader::error(99, libc::EIO));
        assert_eq!(u32_at(&h, 4) as i32, -libc::EIO);
        assert_eq!(u32_at(&h, ENT_IN_OUT_OFFSET + 16), 0);
    }

    #[test]
    fn cmd_req_layout() {
        let c = cmd_req(3, 0x1122);
        assert_eq!(u64_at(&c, 0), 0);
        assert_eq!(u64_at(&c, 8), 0x1122);
        assert_eq!(u16::from_le_bytes([c[16], c[17]]), 3);
    }

    #[test]
    fn init_flags() {
        let mut req = vec![0u8; IN_HEADER_BYTES + 64];
        put_u32(&mut req, 4, OPCODE_INIT);
        assert!(!init_offers_uring(&req));
        put_u32(&mut req, IN_HEADER_BYTES + 12, FLAGS_INIT_EXT);
        put_u32(&mut req, IN_HEADER_BYTES + 16, FLAGS2_OVER_IO_URING);
        assert!(init_offers_uring(&req));
        assert!(!init_offers_uring(&req[..50]), "short request");

        let mut reply = vec![0u8; OUT_HEADER_BYTES + 64];
        put_u32(&mut reply, OUT_HEADER_BYTES + 12, 0x1);
        assert!(enable_uring_in_init_reply(&mut reply));
        assert_eq!(u32_at(&reply, 28), 0x1 | FLAGS_INIT_EXT);
        assert_eq!(u32_at(&reply, 48), FLAGS2_OVER_IO_URING);
        put_u32(&mut reply, 4, (-libc::EPROTO) as u32);
        assert!(!enable_uring_in_init_reply(&mut reply), "error reply");
        assert!(!enable_uring_in_init_reply(&mut [0u8; 40]), "7.22 reply");
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(cpu_list("0"), Some(vec![0]));
        assert_eq!(cpu_list("0-3,6,8-9"), Some(vec![0, 1, 2, 3, 6, 8, 9]));
        assert_eq!(cpu_list(""), None);
        assert_eq!(cpu_list("3-1"), None);
        assert_eq!(cpu_list("x"), None);
    }
}
