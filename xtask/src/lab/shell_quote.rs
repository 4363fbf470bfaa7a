//! Quoting words for POSIX shells (the guest runs bash / busybox sh).

/// `s` as one shell word: unchanged when it only holds safe characters,
/// otherwise single-quoted.
pub fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `bash -n` on `script`: `Err` with bash's complaint when it does not parse (for the tests
/// of the guest scripts).
pub fn bash_syntax(script: &str) -> Result<(), String> {
    let out = std::process::Command::new("bash")
        .args(["-n", "-c", script])
        .output()
        .map_err(|e| format!("running bash: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A command line from separate arguments.
pub fn join<S: AsRef<str>>(args: &[S]) -> String {
    args.iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {

    #[test]
    fn bash_syntax_tells_broken_scripts_apart() {
        assert_eq!(bash_syntax("f() { echo ok; }\nf"), Ok(()));
        assert!(bash_syntax("if true; then echo").is_err());
    }

    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote("ls"), "ls");
        assert_eq!(quote("/dev/dri"), "/dev/dri");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(join(&["ls", "-l", "a b"]), "ls -l 'a b'");
    }
}
