//! Where start-up time goes: each step from launch to attached probes, said once on stderr.
//! Under the lab's emulation start-up takes seconds (issue: first histogram within 1 s), and
//! without a breakdown there is nothing to aim at.

use std::time::{Duration, Instant};

pub struct Startup {
    begin: Instant,
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Startup {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            begin: now,
            last: now,
            steps: Vec::new(),
        }
    }

    /// Ends the step called `name`: the time since the previous step ended.
    pub fn step(&mut self, name: &'static str) {
        let now = Instant::now();
        self.steps.push((name, now - self.last));
        self.last = now;
    }

    pub fn line(&self) -> String {
        render(self.last - self.begin, &self.steps)
    }
}

fn render(total: Duration, steps: &[(&'static str, Duration)]) -> String {
    let parts: Vec<String> = steps
        .iter()
        .map(|(name, d)| format!("{name} {:.2} s", d.as_secs_f64()))
        .collect();
    format!(
        "attached in {:.2} s ({})",
        total.as_secs_f64(),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_add_up_to_the_total_in_the_line() {
        let steps = [
            ("kernel facts", Duration::from_millis(310)),
            ("call sites", Duration::from_millis(2_994)),
        ];
        assert_eq!(
            render(Duration::from_millis(3_304), &steps),
            "attached in 3.30 s (kernel facts 0.31 s, call sites 2.99 s)"
        );
        let mut s = Startup::new();
        s.step("a");
        s.step("b");
        let line = s.line();
        assert!(line.starts_with("attached in ") && line.contains("(a ") && line.contains(", b "));
    }
}
