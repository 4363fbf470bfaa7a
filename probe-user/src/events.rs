//! Decoding of ring-buffer records (layouts in probe-common).

use probe_common::{AbandonedEvent, AttemptEvent, EventKind, WaiterEvent};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Attempt(AttemptEvent),
    Waiter(WaiterEvent),
    Abandoned(AbandonedEvent),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("ring buffer record of {0} bytes is too short")]
    Short(usize),
    #[error("unknown ring buffer record kind {0}")]
    Kind(u32),
}

fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < std::mem::size_of::<T>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: length checked; T is a plain-old-data #[repr(C)] record from probe-common, valid
    // for any bit pattern; read_unaligned copes with the ring buffer's 8-byte alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let kind: u32 = read(bytes)?;
    match EventKind::from_u32(kind) {
        Some(EventKind::Attempt) => read(bytes).map(Record::Attempt),
        Some(EventKind::Waiter) => read(bytes).map(Record::Waiter),
        Some(EventKind::Abandoned) => read(bytes).map(Record::Abandoned),
        None => Err(DecodeError::Kind(kind)),
    }
}

/// A NUL-padded kernel string (comm, module name) as text, lossy.
pub fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_short_and_unknown_records() {
        assert_eq!(decode(&[1, 0]), Err(DecodeError::Short(2)));
        assert_eq!(decode(&[9, 0, 0, 0, 0, 0, 0, 0]), Err(DecodeError::Kind(9)));
        // An attempt record truncated to 8 bytes.
        assert_eq!(
            decode(&[1, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::Short(8))
        );
    }

    #[test]
    fn decodes_a_waiter_record() {
        let w = WaiterEvent {
            kind: EventKind::Waiter as u32,
            lock_flags: 4,
            tid: 7,
            tgid: 7,
            mm_lock: 0xffff_0000,
            begin_ns: 10,
            end_ns: 30,
            held_overlap_ns: 15,
            comm: *b"victim\0\0\0\0\0\0\0\0\0\0",
        };
        // SAFETY: viewing a POD struct as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&w as *const WaiterEvent).cast::<u8>(),
                std::mem::size_of::<WaiterEvent>(),
            )
        };
        assert_eq!(decode(bytes), Ok(Record::Waiter(w)));
        assert_eq!(cstr(&w.comm), "victim");
    }
}
