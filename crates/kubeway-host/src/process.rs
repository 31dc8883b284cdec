//! Whether a process still lives, told apart from a later one that got the same pid: its state
//! (a zombie — killed, not yet reaped by its parent — is dead: it holds no sockets, locks or
//! anything else) and its start time.

/// What the system says about a pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The state letter (`R`, `S`, `D`, `T`, `Z` zombie, `X` dead …).
    pub state: char,
    /// When it started (Linux: field 22 of /proc/PID/stat, clock ticks since boot; elsewhere
    /// `ps -o lstart=`).
    pub start_time: String,
}

impl ProcStat {
    /// Whether the process is gone in all but name: a zombie or dead.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses a /proc/PID/stat line: state (field 3) and start time (field 22). The command name
/// (field 2) is in parentheses and may hold spaces and parentheses itself, so fields are counted
/// after the last `)`.
pub fn parse_stat(stat: &str) -> Option<ProcStat> {
    let close = stat.rfind(')')?;
    let rest = stat.get(close.checked_add(1)?..)?;
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); starttime is field 22.
    let state = fields.next()?.chars().next()?;
    let start_time = fields.nth(22 - 4)?.to_string();
    Some(ProcStat { state, start_time })
}

/// The state and start time of `pid`, None when there is no such process.
pub fn stat(pid: u32) -> Option<ProcStat> {
    if cfg!(target_os = "linux") {
        let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&line)
    } else {
        let out = std::process::Command::new("ps")
            .args(["-o", "stat=", "-o", "lstart=", "-p", &pid.to_string()])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || text.is_empty() {
            return None;
        }
        let (state, start) = text.split_once(char::is_whitespace)?;
        Some(ProcStat {
            state: state.chars().next()?,
            start_time: start.trim().to_string(),
        })
    }
}

/// Whether `pid` is a live process (it exists and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| !s.is_zombie())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_start_time_even_with_spaces_and_parens_in_the_name() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 12345678 300 18446744073709551615";
        let s = parse_stat(line).expect("parsed");
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_time, "987654");
        assert!(!s.is_zombie());
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x)"), None);
    }

    #[test]
    fn this_process_is_alive() {
        assert!(is_alive(std::process::id()));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_killed_child_not_yet_reaped_is_a_zombie_and_counts_as_dead() {
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        assert!(is_alive(pid));
        child.kill().expect("kill");
        // Not waited for: the kernel keeps it as a zombie until we reap it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !stat(pid).is_some_and(|s| s.is_zombie()) {
            assert!(
                std::time::Instant::now() < deadline,
                "no zombie: {:?}",
                stat(pid)
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(stat(pid).is_some(), "the pid still exists");
        assert!(!is_alive(pid), "a zombie is dead");
        child.wait().expect("reaped");
        assert!(!is_alive(pid));
    }
}
