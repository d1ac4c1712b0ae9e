//! A real container's resource use, read from its cgroup as cAdvisor reads it for the kubelet:
//! cgroup v1 (`cpuacct.usage`, `memory.usage_in_bytes`, `memory.stat`'s `total_*` counters) or
//! v2 (`cpu.stat`'s `usage_usec`, `memory.current`, `memory.stat`), whichever hierarchy has the
//! container's directory (this host is hybrid: v1 controllers next to an empty v2 mount). The
//! working set is usage less inactive file pages, never below zero, as cAdvisor computes it.

use super::protocol::Usage;

/// The fields of a `memory.stat` or `cpu.stat` file: `name value` lines.
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// cgroup v1's counters: `cpuacct.usage` (nanoseconds), `memory.usage_in_bytes`, `memory.stat`.
pub(super) fn parse_v1(cpuacct_usage: &str, usage_in_bytes: &str, memory_stat: &str) -> Usage {
    let usage = number(usage_in_bytes).unwrap_or(0);
    let inactive = field(memory_stat, "total_inactive_file").unwrap_or(0);
    Usage {
        cpu_usage_core_nanos: number(cpuacct_usage).unwrap_or(0),
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.saturating_sub(inactive),
        memory_rss_bytes: field(memory_stat, "total_rss").unwrap_or(0),
        page_faults: field(memory_stat, "total_pgfault").unwrap_or(0),
        major_page_faults: field(memory_stat, "total_pgmajfault").unwrap_or(0),
    }
}

/// cgroup v2's counters: `cpu.stat` (`usage_usec`), `memory.current`, `memory.stat`.
pub(super) fn parse_v2(cpu_stat: &str, memory_current: &str, memory_stat: &str) -> Usage {
    let usage = number(memory_current).unwrap_or(0);
    let inactive = field(memory_stat, "inactive_file").unwrap_or(0);
    Usage {
        cpu_usage_core_nanos: field(cpu_stat, "usage_usec").unwrap_or(0) * 1000,
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.saturating_sub(inactive),
        memory_rss_bytes: field(memory_stat, "anon").unwrap_or(0),
        page_faults: field(memory_stat, "pgfault").unwrap_or(0),
        major_page_faults: field(memory_stat, "pgmajfault").unwrap_or(0),
    }
}

/// The use of the cgroup at `cgroups_path` (`/orrery/<cluster>/<node>/<pod>/<container>`),
/// from the v1 hierarchies when they have it, else from the v2 one; zeros when it is gone.
pub(super) fn read(cgroups_path: &str) -> Usage {
    let relative = cgroups_path.trim_start_matches('/');
    let hierarchies = super::helper::cgroup_hierarchies();
    let file = |name: &str| -> Option<String> {
        hierarchies
            .iter()
            .find_map(|h| std::fs::read_to_string(h.join(relative).join(name)).ok())
    };
    if let Some(cpu) = file("cpuacct.usage") {
        return parse_v1(
            &cpu,
            &file("memory.usage_in_bytes").unwrap_or_default(),
            &file("memory.stat").unwrap_or_default(),
        );
    }
    let unified = hierarchies
        .iter()
        .map(|h| h.join(relative))
        .find(|dir| dir.join("cgroup.controllers").exists());
    match unified {
        Some(dir) => {
            let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            parse_v2(
                &read("cpu.stat"),
                &read("memory.current"),
                &read("memory.stat"),
            )
        }
        None => Usage::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_working_set_is_usage_less_inactive_files() {
        let stat = "cache 4096\nrss 1000\ntotal_cache 8192\ntotal_rss 70000000\ntotal_inactive_file 2000000\ntotal_pgfault 17\ntotal_pgmajfault 2\n";
        let usage = parse_v1("123456789\n", "72000000\n", stat);
        assert_eq!(usage.cpu_usage_core_nanos, 123_456_789);
        assert_eq!(usage.memory_usage_bytes, 72_000_000);
        assert_eq!(usage.memory_working_set_bytes, 70_000_000);
        assert_eq!(usage.memory_rss_bytes, 70_000_000);
        assert_eq!((usage.page_faults, usage.major_page_faults), (17, 2));
        // More inactive file pages than usage (a racing read) is zero, not a wrap.
        let usage = parse_v1("0", "10", "total_inactive_file 20\n");
        assert_eq!(usage.memory_working_set_bytes, 0);
    }

    #[test]
    fn v2_reads_microseconds_and_anon() {
        let usage = parse_v2(
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
            "5000\n",
            "anon 3000\nfile 2000\ninactive_file 1500\npgfault 9\npgmajfault 1\n",
        );
        assert_eq!(usage.cpu_usage_core_nanos, 2_500_000);
        assert_eq!(usage.memory_working_set_bytes, 3500);
        assert_eq!(usage.memory_rss_bytes, 3000);
        assert_eq!((usage.page_faults, usage.major_page_faults), (9, 1));
    }

    #[test]
    fn a_missing_cgroup_reads_as_zero() {
        assert_eq!(read("/orrery/no-such-cluster/x/y/z"), Usage::default());
    }
}
