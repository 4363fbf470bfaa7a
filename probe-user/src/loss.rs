//! What the probes could not observe: every loss channel the kernel offers, in one table
//! (probe-common's [`CHANNELS`], which also numbers the probes' own counters) that
//! [`ProbeStats`], the report, `/metrics`, `compare`, `merge` and the lab tests derive from.

/// Counters of what the probes could not do, always shown. `None`: unknown — the kernel
/// does not report the channel, a read of it failed (the session's `read_errors` say why), or
/// an old recording did not carry it. Never 0 for "could not tell".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeStats {
    #[serde(default)]
    pub ringbuf_drops: Option<u64>,
    #[serde(default)]
    pub thread_map_full: Option<u64>,
    #[serde(default)]
    pub orphan_returns: Option<u64>,
    #[serde(default)]
    pub watch_map_full: Option<u64>,
    #[serde(default)]
    pub waiter_map_full: Option<u64>,
    #[serde(default)]
    pub read_faults: Option<u64>,
    #[serde(default)]
    pub retprobe_misses: Option<u64>,
    /// Hits of ttmlat's tracefs kprobes (call sites) that the kernel did not run the program
    /// for (`kprobe_profile` nmissed). Absent in recordings before 0.2.
    #[serde(default)]
    pub kprobe_misses: Option<u64>,
    /// Runs of ttmlat's programs that the kernel skipped because a program was already
    /// running on that CPU (`recursion_misses` in each program's fdinfo, 5.12+; `None` where
    /// the kernel does not report it). Absent before 0.2.
    #[serde(default)]
    pub recursion_misses: Option<u64>,
}

pub use probe_common::loss::{CHANNELS, COUNT, Channel, Counter};

/// One loss channel of the table with this session's (or recording's) value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossChannel {
    pub field: &'static str,
    pub reason: &'static str,
    pub words: &'static str,
    /// `None`: unknown (see [`ProbeStats`]).
    pub value: Option<u64>,
}

impl ProbeStats {
    /// Number of [`Self::channels`].
    pub const CHANNELS: usize = COUNT;

    /// The values in the order of [`CHANNELS`] (the one place that maps fields to rows;
    /// [`Self::from_values`] is its inverse, and a test checks both against serde's names).
    pub fn values(&self) -> [Option<u64>; COUNT] {
        [
            self.ringbuf_drops,
            self.retprobe_misses,
            self.kprobe_misses,
            self.recursion_misses,
            self.thread_map_full,
            self.watch_map_full,
            self.waiter_map_full,
            self.orphan_returns,
            self.read_faults,
        ]
    }

    /// Stats from values in the order of [`CHANNELS`].
    pub fn from_values(v: [Option<u64>; COUNT]) -> Self {
        ProbeStats {
            ringbuf_drops: v[0],
            retprobe_misses: v[1],
            kprobe_misses: v[2],
            recursion_misses: v[3],
            thread_map_full: v[4],
            watch_map_full: v[5],
            waiter_map_full: v[6],
            orphan_returns: v[7],
            read_faults: v[8],
        }
    }

    /// Every channel known and 0 (tests, and a kernel that reports them all).
    pub fn zero() -> Self {
        Self::from_values([Some(0); COUNT])
    }

    /// Reads every channel from where the kernel counts it ([`Counter`]). A channel whose
    /// read fails is unknown, and the error says why; the others are still read.
    pub fn read(
        mut count: impl FnMut(Counter) -> anyhow::Result<Option<u64>>,
    ) -> (Self, Vec<anyhow::Error>) {
        let mut v = [None; COUNT];
        let mut errors = Vec::new();
        for (slot, c) in v.iter_mut().zip(CHANNELS) {
            match count(c.counter) {
                Ok(n) => *slot = n,
                Err(e) => errors.push(e.context(format!("loss channel {} is unknown", c.field))),
            }
        }
        (Self::from_values(v), errors)
    }

    /// Every loss channel with its value: the report, `/metrics`, `compare` and the lab
    /// tests' "nothing lost" checks all iterate it.
    pub fn channels(&self) -> [LossChannel; COUNT] {
        let values = self.values();
        std::array::from_fn(|i| LossChannel {
            field: CHANNELS[i].field,
            reason: CHANNELS[i].reason,
            words: CHANNELS[i].words,
            value: values[i],
        })
    }

    /// Both sessions' losses (merged recordings). A channel one of them could not read
    /// stays unknown.
    pub fn plus(&self, o: &ProbeStats) -> ProbeStats {
        let (a, b) = (self.values(), o.values());
        Self::from_values(std::array::from_fn(|i| a[i].zip(b[i]).map(|(x, y)| x + y)))
    }

    /// The channels whose value is unknown, by field name.
    pub fn unknown(&self) -> Vec<&'static str> {
        self.channels()
            .iter()
            .filter(|c| c.value.is_none())
            .map(|c| c.field)
            .collect()
    }

    /// Sum of every channel the kernel reports.
    pub fn total(&self) -> u64 {
        self.values().iter().flatten().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_is_in_the_table_once() {
        let s = ProbeStats::from_values(std::array::from_fn(|i| Some(i as u64 + 1)));
        let ch = s.channels();
        assert_eq!(s.total(), 45);
        // Every field of the serialized struct is a channel, and the other way round.
        let json = serde_json::to_value(s).expect("serializes");
        let fields = json.as_object().expect("an object");
        assert_eq!(fields.len(), ch.len());
        for c in ch {
            assert_eq!(fields[c.field].as_u64(), c.value, "{}", c.field);
        }
        let mut reasons: Vec<&str> = ch.iter().map(|c| c.reason).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), ch.len());
        assert_eq!(ProbeStats::from_values(s.values()), s);
    }

    /// A channel a recording does not carry (0.1 had no kprobe or recursion counts) or that
    /// the kernel could not be read for is unknown, not 0, and does not add to a sum.
    #[test]
    fn absent_or_unreadable_channels_are_unknown() {
        let full = serde_json::to_value(ProbeStats::zero()).expect("serializes");
        for (i, c) in CHANNELS.iter().enumerate() {
            let mut v = full.clone();
            v.as_object_mut().expect("an object").remove(c.field);
            let parsed: ProbeStats = serde_json::from_value(v).expect("parses");
            assert_eq!(parsed.values()[i], None, "{}", c.field);
            assert_eq!(parsed.unknown(), [c.field]);
            assert_eq!(parsed.plus(&ProbeStats::zero()).values()[i], None);
        }
        let (read, errors) = ProbeStats::read(|counter| match counter {
            Counter::Probe(slot) => Ok(Some(u64::from(slot) + 10)),
            Counter::ReturnProbes => anyhow::bail!("kprobe_profile: EACCES"),
            Counter::Kprobes => Ok(Some(2)),
            Counter::Programs => Ok(None),
        });
        assert_eq!(read.ringbuf_drops, Some(10));
        assert_eq!(read.read_faults, Some(15));
        assert_eq!(read.kprobe_misses, Some(2));
        assert_eq!(read.retprobe_misses, None);
        assert_eq!(read.recursion_misses, None);
        assert_eq!(errors.len(), 1);
        assert!(format!("{:#}", errors[0]).contains("retprobe_misses"));
    }
}
