//! Kernel addresses to "function+0xoff [module]", from /proc/kallsyms text.

/// Sorted text symbols of the running kernel.
pub struct Symbolizer {
    syms: Vec<(u64, String)>,
}

impl Symbolizer {
    pub fn from_kallsyms(text: &str) -> Self {
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut it = line.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                if !matches!(kind, "t" | "T") || addr == 0 {
                    return None;
                }
                let name = it.next()?;
                Some(match it.next() {
                    Some(module) => (addr, format!("{name} {module}")),
                    None => (addr, name.to_string()),
                })
            })
            .collect();
        syms.sort_unstable_by_key(|(a, _)| *a);
        Self { syms }
    }

    /// The symbol containing `addr`, as "name+0xoff" (plus " [module]").
    pub fn resolve(&self, addr: u64) -> String {
        let idx = self.syms.partition_point(|(a, _)| *a <= addr);
        match idx.checked_sub(1).and_then(|i| self.syms.get(i)) {
            Some((base, name)) => match name.split_once(' ') {
                Some((func, module)) => format!("{func}+{:#x} {module}", addr - base),
                None => format!("{name}+{:#x}", addr - base),
            },
            None => format!("{addr:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_offsets_and_modules() {
        let s = Symbolizer::from_kallsyms(
            "ffffffff81000000 T _stext\n\
             ffffffff81000100 t foo\n\
             ffffffffc0000000 t ttm_bo_vm_fault\t[ttm]\n\
             0000000000000000 T hidden\n",
        );
        assert_eq!(s.resolve(0xffffffff81000105), "foo+0x5");
        assert_eq!(s.resolve(0xffffffffc0000010), "ttm_bo_vm_fault+0x10 [ttm]");
        assert_eq!(s.resolve(0x10), "0x10");
    }
}
