//! Decoding of ring-buffer records (layouts in probe-common).

use std::collections::HashMap;

use probe_common::{
    AbandonedEvent, AttemptEvent, COMM_LEN, DRIVER_LEN, EventKind, QuietKey, WaiterEvent,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Attempt(AttemptEvent),
    Waiter(WaiterEvent),
    Abandoned(AbandonedEvent),
    /// Quiet episodes the probes counted in place (`QUIET` map) since the last read.
    Quiet(QuietEpisodes),
}

/// `count` quiet episodes (one uncontended attempt each: path `uncontended`) of one process,
/// comm and driver whose latency fell in one bucket, represented by its midpoint (within
/// 1.6 % of each of them; `probe_common::latency_bucket`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietEpisodes {
    pub tgid: u32,
    pub comm: [u8; COMM_LEN],
    pub driver: [u8; DRIVER_LEN],
    pub latency_ns: u64,
    pub count: u64,
}

/// The quiet episodes counted since `last` (cumulative per-key sums read from the map), as
/// records; `last` becomes `now`. Counts only grow (the probes never delete a key): a key
/// whose count went down is reported as undecodable rather than turned into a negative.
pub fn quiet_since(
    now: &HashMap<QuietKey, u64>,
    last: &mut HashMap<QuietKey, u64>,
) -> (Vec<Record>, u64) {
    let mut out = Vec::new();
    let mut bad = 0;
    for (key, &n) in now {
        let before = last.get(key).copied().unwrap_or(0);
        if n < before {
            bad += 1;
            continue;
        }
        if n == before {
            continue;
        }
        let Some((lo, hi)) = probe_common::latency_bucket_bounds(key.bucket) else {
            bad += 1;
            continue;
        };
        out.push(Record::Quiet(QuietEpisodes {
            tgid: key.tgid,
            comm: key.comm,
            driver: key.driver,
            latency_ns: lo + (hi - lo) / 2,
            count: n - before,
        }));
        last.insert(*key, n);
    }
    (out, bad)
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
    fn quiet_counts_become_records_of_their_increase() {
        let key = |bucket| QuietKey {
            tgid: 7,
            bucket,
            comm: *b"app\0\0\0\0\0\0\0\0\0\0\0\0\0",
            driver: *b"amdgpu\0\0\0\0\0\0\0\0\0\0",
        };
        let b = probe_common::latency_bucket(10_000);
        let mut last = HashMap::new();
        let now = HashMap::from([(key(b), 5)]);
        let (recs, bad) = quiet_since(&now, &mut last);
        assert_eq!(bad, 0);
        let [Record::Quiet(q)] = recs[..] else {
            panic!("{recs:?}")
        };
        assert_eq!((q.tgid, q.count), (7, 5));
        assert!((q.latency_ns as f64 - 10_000.0).abs() / 10_000.0 < 0.016);
        // Unchanged: nothing; grown by 2: 2; shrunk: counted as bad, not negative.
        assert!(quiet_since(&now, &mut last).0.is_empty());
        let (recs, _) = quiet_since(&HashMap::from([(key(b), 7)]), &mut last);
        assert!(matches!(
            recs[..],
            [Record::Quiet(QuietEpisodes { count: 2, .. })]
        ));
        let (recs, bad) = quiet_since(&HashMap::from([(key(b), 1)]), &mut last);
        assert!(recs.is_empty() && bad == 1);
        let (_, bad) = quiet_since(&HashMap::from([(key(u32::MAX), 1)]), &mut last);
        assert_eq!(bad, 1);
    }

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
