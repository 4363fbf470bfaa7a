//! What the probes could not observe: every loss channel the kernel offers, in one table
//! ([`ProbeStats::channels`]) that the report, `/metrics`, `compare`, `merge` and the lab
//! tests derive from.

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

/// One way the kernel can lose what ttmlat would have observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossChannel {
    /// Field of [`ProbeStats`] (recordings, JSON).
    pub field: &'static str,
    /// `reason` label of `ttmlat_lost_events_total`.
    pub reason: &'static str,
    /// Words for the terminal report.
    pub words: &'static str,
    /// `None`: this kernel does not report it.
    pub value: Option<u64>,
}

impl ProbeStats {
    /// Number of [`Self::channels`].
    pub const CHANNELS: usize = 9;

    /// Every loss channel, in one table: the report, `/metrics`, `compare` and the lab
    /// tests' "nothing lost" checks all iterate it.
    pub fn channels(&self) -> [LossChannel; Self::CHANNELS] {
        let c = |field, reason, words, value: u64| LossChannel {
            field,
            reason,
            words,
            value: Some(value),
        };
        [
            c(
                "ringbuf_drops",
                "ring_buffer_full",
                "ring buffer full",
                self.ringbuf_drops,
            ),
            c(
                "retprobe_misses",
                "retprobe_missed",
                "return probes missed",
                self.retprobe_misses,
            ),
            LossChannel {
                field: "kprobe_misses",
                reason: "kprobe_missed",
                words: "kprobes missed",
                value: self.kprobe_misses,
            },
            LossChannel {
                field: "recursion_misses",
                reason: "program_skipped",
                words: "programs skipped (recursion)",
                value: self.recursion_misses,
            },
            c(
                "thread_map_full",
                "thread_map_full",
                "thread map full",
                self.thread_map_full,
            ),
            c(
                "watch_map_full",
                "watch_map_full",
                "mm watch map full",
                self.watch_map_full,
            ),
            c(
                "waiter_map_full",
                "waiter_map_full",
                "waiter map full",
                self.waiter_map_full,
            ),
            c(
                "orphan_returns",
                "orphan_return",
                "orphan returns",
                self.orphan_returns,
            ),
            c(
                "read_faults",
                "read_fault",
                "kernel reads failed",
                self.read_faults,
            ),
        ]
    }

    /// Both sessions' losses (merged recordings). A channel one of them could not read
    /// stays unknown.
    pub fn plus(&self, o: &ProbeStats) -> ProbeStats {
        ProbeStats {
            ringbuf_drops: self.ringbuf_drops + o.ringbuf_drops,
            thread_map_full: self.thread_map_full + o.thread_map_full,
            orphan_returns: self.orphan_returns + o.orphan_returns,
            watch_map_full: self.watch_map_full + o.watch_map_full,
            waiter_map_full: self.waiter_map_full + o.waiter_map_full,
            read_faults: self.read_faults + o.read_faults,
            retprobe_misses: self.retprobe_misses + o.retprobe_misses,
            kprobe_misses: self.kprobe_misses.zip(o.kprobe_misses).map(|(a, b)| a + b),
            recursion_misses: self
                .recursion_misses
                .zip(o.recursion_misses)
                .map(|(a, b)| a + b),
        }
    }

    /// Sum of every channel the kernel reports.
    pub fn total(&self) -> u64 {
        self.channels().iter().filter_map(|c| c.value).sum()
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
    }
}
