//! Parsers for the text `apt-cache` prints (pure; unit-tested).

/// The kernel image `linux-image-amd64` depends on, from
/// `apt-cache depends linux-image-amd64` (e.g. `linux-image-6.1.0-56-amd64`).
pub fn default_image_dependency(depends_output: &str) -> Option<String> {
    depends_output.lines().find_map(|line| {
        let dep = line
            .trim()
            .trim_start_matches('|')
            .strip_prefix("Depends:")?;
        let dep = dep.trim();
        (dep.starts_with("linux-image-") && !dep.starts_with('<')).then(|| dep.to_owned())
    })
}

/// The highest-versioned package named `<prefix><N>.<suffix>`-style among
/// `apt-cache search` lines (`name - description`), comparing the dotted
/// numeric run that follows `prefix` numerically, e.g. with prefix
/// `linux-image-6.12.` the `117` of `linux-image-6.12.117+deb12-amd64-unsigned`.
pub fn highest_versioned(search_output: &str, prefix: &str, suffix: &str) -> Option<String> {
    search_output
        .lines()
        .filter_map(|line| {
            let name = line.split(" - ").next()?.trim();
            let rest = name.strip_prefix(prefix)?;
            name.ends_with(suffix).then_some(())?;
            let key = numeric_key(rest)?;
            Some((key, name.to_owned()))
        })
        .max()
        .map(|(_, name)| name)
}

/// Leading `N[.N...]` of `s` as numbers (stops at the first other character).
fn numeric_key(s: &str) -> Option<Vec<u64>> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let parts: Option<Vec<u64>> = s[..end]
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().ok())
        .collect();
    parts.filter(|p| !p.is_empty())
}

/// The `Version:` of the first stanza of `apt-cache show --no-all-versions`.
pub fn show_version(show_output: &str) -> Option<String> {
    show_output
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// File name `apt-get download` gives a package (`:` is escaped as `%3a`).
pub fn deb_file_name(package: &str, version: &str, arch: &str) -> String {
    format!("{package}_{}_{arch}.deb", version.replace(':', "%3a"))
}

/// `uname -r` of a Debian kernel image package:
/// `linux-image-<release>[-unsigned]`.
pub fn release_of_image_package(package: &str) -> Option<&str> {
    let rest = package.strip_prefix("linux-image-")?;
    let rest = rest.strip_suffix("-unsigned").unwrap_or(rest);
    (!rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_default_image_dependency() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(
            default_image_dependency(out).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        let alt =
            "linux-image-amd64\n |Depends: linux-image-6.1.0-57-amd64\n  Depends: <virtual>\n";
        assert_eq!(
            default_image_dependency(alt).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(default_image_dependency("linux-image-amd64\n"), None);
        assert_eq!(default_image_dependency(""), None);
    }

    #[test]
    fn picks_the_highest_612_numerically() {
        let out = "\
linux-image-6.12.99+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.117+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.107+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.120+deb12-amd64-dbg - debug symbols
linux-image-6.12.113+deb12-cloud-amd64-unsigned - cloud
";
        let best = highest_versioned(out, "linux-image-6.12.", "+deb12-amd64-unsigned");
        assert_eq!(
            best.as_deref(),
            Some("linux-image-6.12.117+deb12-amd64-unsigned")
        );
        assert_eq!(
            highest_versioned("", "linux-image-6.12.", "+deb12-amd64-unsigned"),
            None
        );
    }

    #[test]
    fn reads_versions_and_file_names() {
        let show = "Package: linux-image-6.1.0-56-amd64-unsigned\nVersion: 6.1.192-2\nArchitecture: amd64\n";
        assert_eq!(show_version(show).as_deref(), Some("6.1.192-2"));
        assert_eq!(show_version("Package: x\n"), None);
        assert_eq!(
            deb_file_name(
                "linux-image-6.12.117+deb12-amd64-unsigned",
                "6.12.117-1~deb12u1",
                "amd64"
            ),
            "linux-image-6.12.117+deb12-amd64-unsigned_6.12.117-1~deb12u1_amd64.deb"
        );
        assert_eq!(deb_file_name("p", "1:2.0", "all"), "p_1%3a2.0_all.deb");
    }

    #[test]
    fn derives_release_from_package_name() {
        assert_eq!(
            release_of_image_package("linux-image-6.1.0-56-amd64-unsigned"),
            Some("6.1.0-56-amd64")
        );
        assert_eq!(
            release_of_image_package("linux-image-6.12.117+deb12-amd64-unsigned"),
            Some("6.12.117+deb12-amd64")
        );
        assert_eq!(
            release_of_image_package("linux-headers-6.1.0-56-amd64"),
            None
        );
    }
}
