//! What this machine offers as a node: its resources (from `ray-rs start`'s flags, CPUs and
//! GPUs detected where not given) and the address it is reached at by default. No I/O beyond
//! reading `/dev` and the interface list.

use std::net::{IpAddr, Ipv4Addr};

use crate::args::{StartArgs, check_amount, parse_resources};
use crate::error::Result;
use crate::membership::Resources;

/// The resources a node offers, from its flags.
pub fn node_resources(args: &StartArgs) -> Result<Resources> {
    let mut r = match &args.resources {
        Some(text) => parse_resources(text)?,
        None => Resources::new(),
    };
    let cpus = match args.num_cpus {
        Some(v) => check_amount("--num-cpus", v)?,
        None => std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0),
    };
    let gpus = match args.num_gpus {
        Some(v) => check_amount("--num-gpus", v)?,
        None => detect_gpus(),
    };
    r.insert("CPU".into(), cpus);
    if gpus > 0.0 {
        r.insert("GPU".into(), gpus);
    }
    Ok(r)
}

/// NVIDIA GPUs visible through the driver's device files (the node manager may refine this).
fn detect_gpus() -> f64 {
    let Ok(entries) = std::fs::read_dir("/dev") else {
        return 0.0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix("nvidia")
                .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
        })
        .count() as f64
}

/// The first non-loopback IPv4 address of an interface that is up, else 127.0.0.1.
pub fn default_node_ip() -> IpAddr {
    let mut found = None;
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head to `addrs`, which we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut addrs) } != 0 {
        return IpAddr::V4(Ipv4Addr::LOCALHOST);
    }
    let mut cur = addrs;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_flags & libc::IFF_UP as libc::c_uint == 0 {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points at a sockaddr of the family it names.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if i32::from(family) != libc::AF_INET {
            continue;
        }
        // SAFETY: the family is AF_INET, so the sockaddr is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        if !ip.is_loopback() {
            found = Some(ip);
            break;
        }
    }
    // SAFETY: `addrs` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(addrs) };
    IpAddr::V4(found.unwrap_or(Ipv4Addr::LOCALHOST))
}
