//! Warnings for listeners beyond this machine: kubeway's forwards carry connections into the
//! cluster with the user's credentials and no authentication of their own, so a user-given
//! `--address` that is not loopback gets one warning naming who can now reach what.

use std::net::IpAddr;

/// The warning for listening on `addresses` for `what` (e.g. `svc/web port(s) 8080:80`), or
/// None when every address is loopback.
pub fn warning(addresses: &[IpAddr], what: &str) -> Option<String> {
    let exposed: Vec<&IpAddr> = addresses.iter().filter(|a| !a.is_loopback()).collect();
    if exposed.is_empty() {
        return None;
    }
    let who = if exposed.iter().any(|a| a.is_unspecified()) {
        "every network this machine is on: anyone who can reach this machine"
    } else {
        "the network(s) of those addresses: anyone who can reach them"
    };
    let list: Vec<String> = exposed.iter().map(|a| a.to_string()).collect();
    Some(format!(
        "--address {} is not loopback: kubeway listens for {what} on {who} now reaches it, \
         with no authentication, through your cluster credentials; use --address localhost to keep it to this machine",
        list.join(",")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_quiet_and_anything_else_names_who_reaches_what() {
        let lo: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(warning(&lo, "svc/web port(s) 8080:80"), None);
        let all: Vec<IpAddr> = vec!["0.0.0.0".parse().unwrap()];
        let w = warning(&all, "svc/web port(s) 8080:80").expect("warns");
        assert!(
            w.contains("0.0.0.0") && w.contains("svc/web port(s) 8080:80"),
            "{w}"
        );
        assert!(w.contains("anyone who can reach this machine"), "{w}");
        let lan: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "192.0.2.10".parse().unwrap()];
        let w = warning(&lan, "pod/x port(s) 9000").expect("warns");
        assert!(w.contains("192.0.2.10") && !w.contains("127.0.0.1"), "{w}");
        assert!(warning(&["::".parse().unwrap()], "x").is_some());
    }
}
