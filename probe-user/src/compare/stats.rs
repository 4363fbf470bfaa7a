//! Order statistics and the Mann–Whitney U test computed from HdrHistograms in O(buckets),
//! never O(samples): a recording's histogram may hold 10^7 values.
//!
//! Resolution: a histogram keeps 3 significant digits, so values in the same bucket cannot be
//! told apart. Each bucket stands for its highest equivalent value (what
//! `Histogram::value_at_quantile` reports), and values of two histograms in the same bucket are
//! ties for the U test. Histograms being compared must share their bucket layout (same lowest
//! discernible value and significant digits), which `compare::check` enforces.

use hdrhistogram::Histogram;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

/// Up to this many samples per side the U test uses the exact permutation distribution (as Go's
/// benchstat does); above it, the normal approximation.
pub const EXACT_U_MAX_N: u64 = 50;

/// Up to this many samples the median's confidence interval uses exact binomial
/// probabilities; above it, the normal approximation to Binomial(n, ½) with continuity
/// correction (which agrees to within one rank there, see the tests).
pub const EXACT_CI_MAX_N: u64 = 1000;

/// A histogram's recorded buckets in ascending order: (highest equivalent value, count).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Buckets {
    pub bins: Vec<(u64, u64)>,
    pub total: u64,
}

impl Buckets {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        let bins: Vec<(u64, u64)> = h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        let total = bins.iter().map(|b| b.1).sum();
        Self { bins, total }
    }

    /// Each distinct value its own bucket (exact samples; used by the tests).
    #[cfg(test)]
    pub fn from_values(values: &[u64]) -> Self {
        let mut map = std::collections::BTreeMap::new();
        for v in values {
            *map.entry(*v).or_insert(0u64) += 1;
        }
        Self {
            bins: map.into_iter().collect(),
            total: values.len() as u64,
        }
    }

    /// The `rank`-th smallest sample (1-based); None outside 1..=total.
    pub fn value_at_rank(&self, rank: u64) -> Option<u64> {
        if rank == 0 {
            return None;
        }
        let mut seen = 0u64;
        for &(value, count) in &self.bins {
            seen += count;
            if seen >= rank {
                return Some(value);
            }
        }
        None
    }
}

/// Order-statistic ranks (1-based, `low` < `high`) whose interval covers the median with
/// probability `coverage`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RankInterval {
    pub low: u64,
    pub high: u64,
    pub coverage: f64,
}

fn standard_normal() -> Normal {
    Normal::standard()
}

/// The distribution-free confidence interval for the median of a continuous distribution
/// from `n` samples: [X(j), X(n+1−j)] with the largest j such that
/// P(X(j) ≤ median ≤ X(n+1−j)) = 1 − 2·P(B ≤ j−1) ≥ `confidence`, B ~ Binomial(n, ½).
/// None when even [X(1), X(n)] covers less (n < 6 at 95%).
pub fn median_ci_ranks(n: u64, confidence: f64) -> Option<RankInterval> {
    if n == 0 {
        return None;
    }
    let tail = (1.0 - confidence) / 2.0;
    if n <= EXACT_CI_MAX_N {
        // Binomial(n, ½) cdf by summing the pmf; 0.5^1000 ≈ 1e-301 is still a normal f64.
        let mut pmf = 0.5f64.powi(n as i32);
        let mut cdf = pmf;
        if cdf > tail {
            return None;
        }
        let mut j = 1u64; // cdf == P(B ≤ j−1) ≤ tail
        loop {
            pmf *= (n - (j - 1)) as f64 / j as f64;
            let next = cdf + pmf; // P(B ≤ j)
            if next > tail {
                break;
            }
            cdf = next;
            j += 1;
        }
        Some(RankInterval {
            low: j,
            high: n + 1 - j,
            coverage: 1.0 - 2.0 * cdf,
        })
    } else {
        let normal = standard_normal();
        let z = normal.inverse_cdf(1.0 - tail);
        let nf = n as f64;
        let sd = nf.sqrt() / 2.0;
        // P(B ≤ j−1) ≈ Φ((j − ½ − n/2)/sd) ≤ tail  ⇔  j ≤ n/2 + ½ − z·sd
        let j = (nf / 2.0 + 0.5 - z * sd).floor();
        if j < 1.0 {
            return None;
        }
        let coverage = 1.0 - 2.0 * normal.cdf((j - 0.5 - nf / 2.0) / sd);
        let j = j as u64;
        Some(RankInterval {
            low: j,
            high: n + 1 - j,
            coverage,
        })
    }
}

/// A 95%-style confidence interval for the median, as histogram values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MedianCi {
    pub low: u64,
    pub high: u64,
    pub low_rank: u64,
    pub high_rank: u64,
    /// Exact (or, for n > 1000, normal-approximated) coverage, ≥ the requested confidence.
    pub coverage: f64,
}

pub fn median_ci(b: &Buckets, confidence: f64) -> Option<MedianCi> {
    let r = median_ci_ranks(b.total, confidence)?;
    Some(MedianCi {
        low: b.value_at_rank(r.low)?,
        high: b.value_at_rank(r.high)?,
        low_rank: r.low,
        high_rank: r.high,
        coverage: r.coverage,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UMethod {
    /// Exact permutation distribution of the rank sum given the tie pattern.
    Exact,
    /// Normal approximation with tie and continuity correction (scipy's `asymptotic`).
    Normal,
}

/// A two-sided Mann–Whitney U test of sample x against sample y.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UTest {
    pub n1: u64,
    pub n2: u64,
    /// U of x: pairs with x > y, plus half the tied pairs (scipy's `statistic`).
    pub u1: f64,
    pub p_value: f64,
    pub method: UMethod,
    /// Some value (bucket) occurs in both samples or more than once.
    pub ties: bool,
}

impl UTest {
    /// P(y > x) + ½·P(y = x): the probability that a value of y exceeds one of x.
    pub fn prob_y_greater(&self) -> f64 {
        1.0 - self.u1 / (self.n1 as f64 * self.n2 as f64)
    }
}

/// Buckets of both samples merged by value: (count in x, count in y), ascending.
fn merge(x: &Buckets, y: &Buckets) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(x.bins.len() + y.bins.len());
    let (mut i, mut j) = (0, 0);
    while i < x.bins.len() || j < y.bins.len() {
        match (x.bins.get(i), y.bins.get(j)) {
            (Some(&(vx, cx)), Some(&(vy, cy))) if vx == vy => {
                out.push((cx, cy));
                i += 1;
                j += 1;
            }
            (Some(&(vx, cx)), Some(&(vy, _))) if vx < vy => {
                out.push((cx, 0));
                i += 1;
            }
            (Some(&(_, cx)), None) => {
                out.push((cx, 0));
                i += 1;
            }
            (_, Some(&(_, cy))) => {
                out.push((0, cy));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Two-sided Mann–Whitney U test; None when either sample is empty.
pub fn mann_whitney(x: &Buckets, y: &Buckets) -> Option<UTest> {
    let (n1, n2) = (x.total, y.total);
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let groups = merge(x, y);
    // 2·U1 = Σ over buckets of cx·(2·(y below) + cy), exact in u128.
    let mut two_u1: u128 = 0;
    let mut y_below: u128 = 0;
    let mut ties = false;
    for &(cx, cy) in &groups {
        two_u1 += u128::from(cx) * (2 * y_below + u128::from(cy));
        y_below += u128::from(cy);
        ties |= cx + cy > 1;
    }
    let u1 = two_u1 as f64 / 2.0;
    let (p_value, method) = if n1 <= EXACT_U_MAX_N && n2 <= EXACT_U_MAX_N {
        (exact_p(&groups, n1, n2, two_u1), UMethod::Exact)
    } else {
        (normal_p(&groups, n1, n2, u1), UMethod::Normal)
    };
    Some(UTest {
        n1,
        n2,
        u1,
        p_value,
        method,
        ties,
    })
}

/// scipy.stats.mannwhitneyu(method="asymptotic", use_continuity=True), two-sided:
/// σ² = n1·n2/12 · ((N+1) − Σ(t³−t)/(N(N−1))), z = (|U − n1·n2/2| − ½)/σ, p = 2·(1 − Φ(z)).
fn normal_p(groups: &[(u64, u64)], n1: u64, n2: u64, u1: f64) -> f64 {
    let (a, b) = (n1 as f64, n2 as f64);
    let n = a + b;
    let tie_sum: f64 = groups
        .iter()
        .map(|&(cx, cy)| {
            let t = (cx + cy) as f64;
            t * t * t - t
        })
        .sum();
    let var = a * b / 12.0 * ((n + 1.0) - tie_sum / (n * (n - 1.0)));
    if var <= 0.0 || !var.is_finite() {
        // Every value tied: the samples are indistinguishable.
        return 1.0;
    }
    let z = ((u1 - a * b / 2.0).abs() - 0.5) / var.sqrt();
    (2.0 * standard_normal().sf(z)).clamp(0.0, 1.0)
}

/// Exact two-sided p-value: the probability, over all C(N, n1) equally likely ways to split the
/// pooled (tied) values into samples of n1 and n2, of a rank sum at least as far from its mean
/// as the observed one. Dynamic programming over the tie groups on the doubled mid-rank sum
/// (an integer); O(N · n1 · range), only used for n1, n2 ≤ EXACT_U_MAX_N.
fn exact_p(groups: &[(u64, u64)], n1: u64, n2: u64, two_u1: u128) -> f64 {
    let n1u = n1 as usize;
    let total = (n1 + n2) as usize;
    // Doubled rank sums of sample x lie in 0..=2·n1·N.
    let width = 2 * n1u * total + 1;
    // ways[a][s]: (weighted) number of ways to pick a values from the groups seen so far with
    // doubled rank sum s.
    let mut ways = vec![vec![0f64; width]; n1u + 1];
    ways[0][0] = 1.0;
    let mut start = 1usize; // 1-based rank of the group's first element
    let mut reach = 0usize; // highest s with a non-zero entry so far
    for &(cx, cy) in groups {
        let t = (cx + cy) as usize;
        let two_mid = 2 * start + t - 1; // twice the group's mid-rank
        let mut choose = vec![1f64; t.min(n1u) + 1]; // C(t, g)
        for g in 1..choose.len() {
            choose[g] = choose[g - 1] * (t + 1 - g) as f64 / g as f64;
        }
        // In place, like a 0/1 knapsack: rows are visited from the top so each row's old
        // values are read before any lower row adds into it.
        for a in (0..n1u).rev() {
            let gmax = (n1u - a).min(t);
            let (lower, upper) = ways.split_at_mut(a + 1);
            let src = &lower[a];
            for s in 0..=reach {
                let v = src[s];
                if v == 0.0 {
                    continue;
                }
                for g in 1..=gmax {
                    upper[g - 1][s + g * two_mid] += v * choose[g];
                }
            }
        }
        reach = (reach + t.min(n1u) * two_mid).min(width - 1);
        start += t;
    }
    let dist = &ways[n1u];
    // Doubled rank sum observed, and its mean n1·(N+1).
    let observed = two_u1 as i128 + i128::from(n1) * (i128::from(n1) + 1);
    let mean = i128::from(n1) * (total as i128 + 1);
    let dev = (observed - mean).abs();
    let (mut extreme, mut all) = (0f64, 0f64);
    for (s, &w) in dist.iter().enumerate() {
        all += w;
        if (s as i128 - mean).abs() >= dev {
            extreme += w;
        }
    }
    if all > 0.0 {
        (extreme / all).clamp(0.0, 1.0)
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::new_histogram;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn value_at_rank_walks_the_buckets() {
        let b = Buckets::from_values(&[5, 1, 3, 3]);
        assert_eq!(b.value_at_rank(0), None);
        assert_eq!(b.value_at_rank(1), Some(1));
        assert_eq!(b.value_at_rank(2), Some(3));
        assert_eq!(b.value_at_rank(3), Some(3));
        assert_eq!(b.value_at_rank(4), Some(5));
        assert_eq!(b.value_at_rank(5), None);
    }

    #[test]
    fn buckets_use_the_histograms_highest_equivalent_values() {
        let mut h = new_histogram();
        for v in [1_000_001u64, 1_000_100, 2_000_000] {
            h.record(v).expect("in range");
        }
        let b = Buckets::from_histogram(&h);
        // 1_000_001 and 1_000_100 share a 3-significant-digit bucket.
        assert_eq!(b.total, 3);
        assert_eq!(b.bins.len(), 2);
        assert_eq!(b.bins[0].1, 2);
        assert_eq!(b.value_at_rank(2), Some(h.value_at_quantile(0.5)));
    }

    /// Ranks from standard tables and from scipy.stats.binom: n=10 → (2, 9), coverage
    /// 0.978515625; n=100 → (40, 61), 0.9647997997822952; n=6 → (1, 6), 0.96875;
    /// n=1000 → (469, 532), 0.9537088026395019; n=12345 → (6064, 6282), 0.95024819.
    #[test]
    fn median_ci_ranks_match_binomial_tables() {
        assert_eq!(median_ci_ranks(0, 0.95), None);
        assert_eq!(median_ci_ranks(5, 0.95), None, "n=5 cannot reach 95%");
        let r = median_ci_ranks(6, 0.95).expect("n=6");
        assert_eq!((r.low, r.high), (1, 6));
        assert!(close(r.coverage, 0.96875, 1e-12));
        let r = median_ci_ranks(10, 0.95).expect("n=10");
        assert_eq!((r.low, r.high), (2, 9));
        assert!(close(r.coverage, 0.978515625, 1e-12));
        let r = median_ci_ranks(100, 0.95).expect("n=100");
        assert_eq!((r.low, r.high), (40, 61));
        assert!(close(r.coverage, 0.9647997997822952, 1e-9));
        let r = median_ci_ranks(1000, 0.95).expect("n=1000");
        assert_eq!((r.low, r.high), (469, 532));
        assert!(close(r.coverage, 0.9537088026395019, 1e-9));
        // Normal approximation: within one rank of the exact answer.
        let r = median_ci_ranks(12_345, 0.95).expect("n=12345");
        assert!(r.low.abs_diff(6064) <= 1, "{r:?}");
        assert_eq!(r.high, 12_346 - r.low);
        assert!(r.coverage >= 0.95 && r.coverage < 0.952, "{r:?}");
        // Huge n stays O(1).
        let r = median_ci_ranks(1_000_000_000_000, 0.95).expect("huge n");
        assert!(r.low < 500_000_000_000 && r.high > 500_000_000_000);
    }

    /// A deterministic uniform generator (64-bit LCG, top bits).
    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 33
    }

    #[test]
    fn median_ci_covers_the_true_median_of_synthetic_samples() {
        // Uniform on [1, 2^31]: true median 2^30 (+½).
        let true_median = 1u64 << 30;
        let mut state = 42u64;
        // One large histogram: the interval must contain the true median (to 3 digits).
        let mut h = new_histogram();
        for _ in 0..200_000 {
            h.record(lcg(&mut state) + 1).expect("in range");
        }
        let ci = median_ci(&Buckets::from_histogram(&h), 0.95).expect("ci");
        let slack = h.equivalent_range(true_median);
        assert!(
            ci.low <= true_median + slack && ci.high + slack >= true_median,
            "{ci:?}"
        );
        assert!(ci.low <= h.value_at_quantile(0.5) && h.value_at_quantile(0.5) <= ci.high);
        // Repeated small samples: empirical coverage close to the nominal ≥ 95%.
        let trials = 400;
        let mut covered = 0;
        for _ in 0..trials {
            let values: Vec<u64> = (0..31).map(|_| lcg(&mut state) + 1).collect();
            let ci = median_ci(&Buckets::from_values(&values), 0.95).expect("n=31");
            if ci.low <= true_median && true_median <= ci.high {
                covered += 1;
            }
        }
        assert!(covered >= trials * 92 / 100, "covered {covered}/{trials}");
    }

    /// Reference values from scipy 1.17.1:
    /// `scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method=...)`.
    #[test]
    fn u_test_matches_scipy_exact_without_ties() {
        let cases: [(&[u64], &[u64], f64, f64); 3] = [
            (
                &[1, 2, 3, 4, 5],
                &[6, 7, 8, 9, 10],
                0.0,
                0.007936507936507936,
            ),
            (
                &[1, 3, 5, 7, 9],
                &[2, 4, 6, 8, 10],
                10.0,
                0.6904761904761905,
            ),
            (
                &[1, 3, 5, 7, 9, 11, 13],
                &[2, 4, 6, 8, 10, 12, 14, 16, 18],
                21.0,
                0.29912587412587416,
            ),
        ];
        for (x, y, u, p) in cases {
            let t = mann_whitney(&Buckets::from_values(x), &Buckets::from_values(y))
                .expect("non-empty");
            assert_eq!(t.method, UMethod::Exact);
            assert!(!t.ties);
            assert_eq!(t.u1, u, "{x:?} {y:?}");
            assert!(
                close(t.p_value, p, 1e-9),
                "{x:?} {y:?}: {} vs {p}",
                t.p_value
            );
        }
    }

    /// Hand-computed U; p from enumerating all C(N, n1) splits with scipy.stats.rankdata
    /// mid-ranks (14/126 and 21/1716), cross-checked here by brute force too.
    #[test]
    fn u_test_exact_with_ties() {
        let cases: [(&[u64], &[u64], f64, f64); 2] = [
            (&[1, 2, 2, 3], &[2, 3, 3, 4, 5], 3.0, 14.0 / 126.0),
            (
                &[1, 1, 2, 2, 2, 3],
                &[2, 3, 3, 3, 4, 4, 5],
                4.0,
                21.0 / 1716.0,
            ),
        ];
        for (x, y, u, p) in cases {
            let t = mann_whitney(&Buckets::from_values(x), &Buckets::from_values(y))
                .expect("non-empty");
            assert!(t.ties);
            assert_eq!(t.u1, u);
            assert!(close(t.p_value, p, 1e-9), "{} vs {p}", t.p_value);
            assert!(close(t.p_value, brute_force_p(x, y), 1e-9));
        }
    }

    /// Two-sided permutation p-value by enumerating every split (small inputs only).
    fn brute_force_p(x: &[u64], y: &[u64]) -> f64 {
        let pooled: Vec<u64> = x.iter().chain(y).copied().collect();
        let n = pooled.len();
        // Doubled mid-ranks.
        let two_rank: Vec<i64> = pooled
            .iter()
            .map(|v| {
                let below = pooled.iter().filter(|w| *w < v).count() as i64;
                let equal = pooled.iter().filter(|w| *w == v).count() as i64;
                2 * below + equal + 1
            })
            .collect();
        let n1 = x.len();
        let mean = (n1 * (n + 1)) as i64;
        let observed: i64 = two_rank[..n1].iter().sum();
        let (mut hits, mut all) = (0u64, 0u64);
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize != n1 {
                continue;
            }
            let s: i64 = (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| two_rank[i])
                .sum();
            all += 1;
            if (s - mean).abs() >= (observed - mean).abs() {
                hits += 1;
            }
        }
        hits as f64 / all as f64
    }

    #[test]
    fn u_test_exact_agrees_with_brute_force_on_many_small_samples() {
        let mut state = 7u64;
        for _ in 0..40 {
            let n1 = 1 + (lcg(&mut state) % 6) as usize;
            let n2 = 1 + (lcg(&mut state) % 7) as usize;
            let x: Vec<u64> = (0..n1).map(|_| lcg(&mut state) % 5).collect();
            let y: Vec<u64> = (0..n2).map(|_| lcg(&mut state) % 5).collect();
            let t = mann_whitney(&Buckets::from_values(&x), &Buckets::from_values(&y))
                .expect("non-empty");
            let want = brute_force_p(&x, &y);
            assert!(
                close(t.p_value, want, 1e-9),
                "{x:?} {y:?}: {} vs {want}",
                t.p_value
            );
        }
    }

    #[test]
    fn u_test_matches_scipy_asymptotic_with_ties() {
        // x = [i % 13 for i in range(60)], y = [(i % 11) + 2 for i in range(70)]
        let x: Vec<u64> = (0..60).map(|i| i % 13).collect();
        let y: Vec<u64> = (0..70).map(|i| i % 11 + 2).collect();
        let t = mann_whitney(&Buckets::from_values(&x), &Buckets::from_values(&y)).expect("t");
        assert_eq!(t.method, UMethod::Normal);
        assert_eq!(t.u1, 1720.0);
        assert!(close(t.p_value, 0.07535837834759665, 1e-9), "{}", t.p_value);
        // x = [10]*30 + [20]*40 + [30]*30, y = [10]*20 + [20]*40 + [30]*40
        let mut hx = new_histogram();
        let mut hy = new_histogram();
        for (v, cx, cy) in [(10u64, 30u64, 20u64), (20, 40, 40), (30, 30, 40)] {
            hx.record_n(v, cx).expect("in range");
            hy.record_n(v, cy).expect("in range");
        }
        let t =
            mann_whitney(&Buckets::from_histogram(&hx), &Buckets::from_histogram(&hy)).expect("t");
        assert_eq!(t.u1, 4300.0);
        assert!(close(t.p_value, 0.06807178648851463, 1e-9), "{}", t.p_value);
    }

    #[test]
    fn identical_samples_give_p_one_and_shifts_give_p_zero() {
        let mut h = new_histogram();
        for v in 1..=5_000u64 {
            h.record_n(v * 1_000, 1 + v % 7).expect("in range");
        }
        let b = Buckets::from_histogram(&h);
        let t = mann_whitney(&b, &b).expect("t");
        assert_eq!(t.p_value, 1.0);
        assert!(close(t.prob_y_greater(), 0.5, 1e-12));
        let small = Buckets::from_values(&[3, 1, 4, 1, 5]);
        let t = mann_whitney(&small, &small).expect("t");
        assert_eq!((t.method, t.p_value), (UMethod::Exact, 1.0));
        // Everything tied.
        let flat = Buckets::from_values(&[7; 80]);
        assert_eq!(mann_whitney(&flat, &flat).expect("t").p_value, 1.0);
        // Disjoint, large: p ≈ 0 and y entirely greater.
        let mut hy = new_histogram();
        hy.record_n(10_000_000, 5_000).expect("in range");
        let t = mann_whitney(&b, &Buckets::from_histogram(&hy)).expect("t");
        assert!(t.p_value < 1e-100);
        assert_eq!(t.prob_y_greater(), 1.0);
        // Empty side: no test.
        assert!(mann_whitney(&b, &Buckets::default()).is_none());
    }

    #[test]
    fn ten_million_samples_cost_buckets_not_samples() {
        let mut hx = new_histogram();
        let mut hy = new_histogram();
        for v in 1..=2_000u64 {
            hx.record_n(v * 997, 5_000).expect("in range");
            hy.record_n(v * 1_003, 5_000).expect("in range");
        }
        assert_eq!(hx.len(), 10_000_000);
        let (bx, by) = (Buckets::from_histogram(&hx), Buckets::from_histogram(&hy));
        let t = mann_whitney(&bx, &by).expect("t");
        assert_eq!(t.method, UMethod::Normal);
        assert!(t.p_value < 1e-6, "a 0.6% shift at n=10^7 is detected");
        let ci = median_ci(&bx, 0.95).expect("ci");
        assert!(ci.low <= hx.value_at_quantile(0.5) && hx.value_at_quantile(0.5) <= ci.high);
    }
}
