//! What the probes could not observe: every loss channel the kernel offers, in one table
//! (probe-common's [`CHANNELS`], which also numbers the probes' own counters) that
//! [`ProbeStats`], the report, `/metrics`, `compare`, `merge` and the lab tests derive from.

/// Counters of what the probes could not do, always shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeStats {
    pub ringbuf_drops: u64,
    pub thread_map_full: u64,
    pub orphan_returns: u64,
    pub watch_map_full: u64,
    pub waiter_map_full: u64,
    pub read_faults: u64,
    pub retprobe_misses: u64,
    /// Hits of ttmlat's tracefs kprobes (call sites) that the kernel did not run the program
    /// for (`kprobe_profile` nmissed). Absent (unknown) in recordings before 0.2.
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
    /// `None`: this kernel does not report it (or an old recording did not say).
    pub value: Option<u64>,
}

impl ProbeStats {
    /// Number of [`Self::channels`].
    pub const CHANNELS: usize = COUNT;

    /// The values in the order of [`CHANNELS`] (the one place that maps fields to rows;
    /// [`Self::from_values`] is its inverse, and a test checks both against serde's names).
    pub fn values(&self) -> [Option<u64>; COUNT] {
        [
            Some(self.ringbuf_drops),
            Some(self.retprobe_misses),
            self.kprobe_misses,
            self.recursion_misses,
            Some(self.thread_map_full),
            Some(self.watch_map_full),
            Some(self.waiter_map_full),
            Some(self.orphan_returns),
            Some(self.read_faults),
        ]
    }

    /// Stats from values in the order of [`CHANNELS`]. A channel that recordings have always
    /// carried must have a value: an unknown one is an error, never a 0.
    pub fn from_values(v: [Option<u64>; COUNT]) -> Result<Self, String> {
        let known = |i: usize| {
            v[i].ok_or_else(|| format!("the kernel gave no count for {}", CHANNELS[i].field))
        };
        Ok(ProbeStats {
            ringbuf_drops: known(0)?,
            retprobe_misses: known(1)?,
            kprobe_misses: v[2],
            recursion_misses: v[3],
            thread_map_full: known(4)?,
            watch_map_full: known(5)?,
            waiter_map_full: known(6)?,
            orphan_returns: known(7)?,
            read_faults: known(8)?,
        })
    }

    /// Reads every channel from where the kernel counts it ([`Counter`]).
    pub fn read(
        mut count: impl FnMut(Counter) -> anyhow::Result<Option<u64>>,
    ) -> anyhow::Result<Self> {
        let mut v = [None; COUNT];
        for (slot, c) in v.iter_mut().zip(CHANNELS) {
            *slot = count(c.counter)?;
        }
        Self::from_values(v).map_err(anyhow::Error::msg)
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
        let sum = std::array::from_fn(|i| a[i].zip(b[i]).map(|(x, y)| x + y));
        // Channels recordings always carry are known on both sides.
        Self::from_values(sum).unwrap_or(*self)
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
        let s = ProbeStats {
            ringbuf_drops: 1,
            thread_map_full: 2,
            orphan_returns: 3,
            watch_map_full: 4,
            waiter_map_full: 5,
            read_faults: 6,
            retprobe_misses: 7,
            kprobe_misses: Some(8),
            recursion_misses: Some(9),
        };
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
        assert_eq!(ProbeStats::from_values(s.values()), Ok(s));
    }

    /// A channel every recording carries cannot be missing (from a recording or from the
    /// kernel); the others are unknown when absent, not 0.
    #[test]
    fn channels_since_0_1_are_required_the_others_unknown_when_absent() {
        let full = serde_json::to_value(ProbeStats::default()).expect("serializes");
        for c in CHANNELS {
            let mut v = full.clone();
            v.as_object_mut().expect("an object").remove(c.field);
            let parsed = serde_json::from_value::<ProbeStats>(v);
            if c.since_0_1 {
                assert!(parsed.is_err(), "{} may not be missing", c.field);
            } else {
                let i = CHANNELS.iter().position(|x| x == &c).expect("in the table");
                assert_eq!(parsed.expect("parses").values()[i], None, "{}", c.field);
            }
            let mut values = ProbeStats::default().values();
            let i = CHANNELS.iter().position(|x| x == &c).expect("in the table");
            values[i] = None;
            assert_eq!(ProbeStats::from_values(values).is_err(), c.since_0_1);
        }
        let read = ProbeStats::read(|counter| {
            Ok(match counter {
                Counter::Probe(slot) => Some(u64::from(slot) + 10),
                Counter::ReturnProbes => Some(1),
                Counter::Kprobes => Some(2),
                Counter::Programs => None,
            })
        })
        .expect("reads");
        assert_eq!(read.ringbuf_drops, 10);
        assert_eq!(read.read_faults, 15);
        assert_eq!(read.recursion_misses, None);
    }
}
