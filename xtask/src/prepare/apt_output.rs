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

/// Whether `apt-cache depends` output lists a (possibly alternative) `Depends: name`.
pub fn has_dependency(depends_output: &str, name: &str) -> bool {
    depends_output.lines().any(|line| {
        line.trim()
            .trim_start_matches('|')
            .strip_prefix("Depends:")
            .is_some_and(|dep| dep.trim() == name)
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
/// `linux-image-<release>[-unsigned]` or (7.x) `linux-binary-unsigned-<release>`.
pub fn release_of_image_package(package: &str) -> Option<&str> {
    let rest = package
        .strip_prefix("linux-binary-unsigned-")
        .or_else(|| package.strip_prefix("linux-image-"))?;
    let rest = rest.strip_suffix("-unsigned").unwrap_or(rest);
    (!rest.is_empty()).then_some(rest)
}

/// The Debian mirror the host's apt uses (for the private lists of other suites).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    pub uri: String,
    pub signed_by: Option<String>,
}

/// The first non-security `deb` source of the host: from deb822 text
/// (`debian.sources`) first, else from one-line `sources.list` text.
pub fn debian_mirror(deb822: &str, one_line: &str) -> Option<Mirror> {
    let from_deb822 = deb822.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        let types = field("Types:")?;
        let uri = field("URIs:")?.split_whitespace().next()?.to_owned();
        let suites = field("Suites:")?;
        let usable = types.split_whitespace().any(|t| t == "deb")
            && !uri.contains("security")
            && !suites.split_whitespace().any(|s| s.ends_with("-security"));
        usable.then(|| Mirror {
            uri,
            signed_by: field("Signed-By:").filter(|k| k.starts_with('/')),
        })
    });
    from_deb822.or_else(|| {
        one_line.lines().find_map(|line| {
            let mut words = line.split_whitespace().peekable();
            (words.next()? == "deb").then_some(())?;
            let mut signed_by = None;
            if words.peek()?.starts_with('[') {
                for w in words.by_ref() {
                    let w = w.trim_start_matches('[');
                    if let Some(k) = w.trim_end_matches(']').strip_prefix("signed-by=") {
                        signed_by = Some(k.to_owned());
                    }
                    if w.ends_with(']') {
                        break;
                    }
                }
            }
            let uri = words.next()?;
            let suite = words.next()?;
            (!uri.contains("security") && !suite.ends_with("-security")).then(|| Mirror {
                uri: uri.to_owned(),
                signed_by,
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hosts_debian_mirror() {
        let deb822 = "\
Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";
        assert_eq!(
            debian_mirror(deb822, ""),
            Some(Mirror {
                uri: "http://deb.debian.org/debian".into(),
                signed_by: Some("/usr/share/keyrings/debian-archive-keyring.gpg".into()),
            })
        );
        let list = "deb http://security.debian.org/debian-security bookworm-security main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://ftp.de.debian.org/debian bookworm main\n";
        assert_eq!(
            debian_mirror("", list),
            Some(Mirror {
                uri: "http://ftp.de.debian.org/debian".into(),
                signed_by: Some("/k.gpg".into()),
            })
        );
        assert_eq!(
            debian_mirror("", "deb http://m/debian bookworm main\n").map(|m| m.signed_by),
            Some(None)
        );
        assert_eq!(debian_mirror("", "# nothing\n"), None);
    }

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
    fn sees_the_split_image_layout() {
        let out = "linux-image-7.2.13+deb14-amd64\n  PreDepends: linux-base\n |Depends: dracut\n  \
                   Depends: linux-binary-7.2.13+deb14-amd64\n  Depends: linux-modules-7.2.13+deb14-amd64\n";
        assert!(has_dependency(out, "linux-modules-7.2.13+deb14-amd64"));
        assert!(has_dependency(out, "dracut"));
        assert!(!has_dependency(out, "linux-modules-7.2.13"));
        assert!(!has_dependency(out, "linux-base"));
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
            release_of_image_package("linux-binary-unsigned-7.2.13+deb14-amd64"),
            Some("7.2.13+deb14-amd64")
        );
        assert_eq!(
            release_of_image_package("linux-headers-6.1.0-56-amd64"),
            None
        );
    }
}
