use std::collections::{BTreeSet, HashMap};
use tessella_attestation::identity::NodeId;
use tessella_node::discovery::sim::{Sim, SimOptions};

fn comps(sim: &Sim, idx: &HashMap<NodeId, usize>) -> Vec<Vec<usize>> {
    let alive = sim.alive();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for &s in &alive {
        if !seen.insert(s) {
            continue;
        }
        let mut stack = vec![s];
        let mut c = Vec::new();
        while let Some(i) = stack.pop() {
            c.push(i);
            for p in sim.nodes[i].active() {
                if let Some(&j) = idx.get(&p) {
                    if sim.is_alive(j) && seen.insert(j) {
                        stack.push(j);
                    }
                }
            }
        }
        out.push(c);
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.len()));
    out
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let max: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let spare: usize = std::env::args()
        .nth(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let every: u64 = std::env::args()
        .nth(4)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut sim = Sim::new(
        n,
        spare,
        SimOptions {
            loss: 0.01,
            ..SimOptions::default()
        },
    );
    let idx: HashMap<NodeId, usize> = (0..sim.nodes.len()).map(|i| (sim.id(i), i)).collect();
    sim.join_all();
    let mut last_sizes = String::new();
    for r in 0..=max {
        let conv = sim.converged();
        if r % every == 0 || conv {
            let alive = sim.alive();
            let sizes: Vec<usize> = alive
                .iter()
                .map(|i| sim.nodes[*i].catalog().len())
                .collect();
            let complete = sizes.iter().filter(|s| **s == n - 1).count();
            let min = sizes.iter().min().copied().unwrap_or(0);
            let cs = comps(&sim, &idx);
            let csz: Vec<usize> = cs.iter().map(|c| c.len()).take(8).collect();
            let st: (u64, u64, u64, u64) = alive.iter().fold((0, 0, 0, 0), |a, i| {
                let s = sim.nodes[*i].stats();
                (
                    a.0 + s.failures_declared,
                    a.1 + s.refutations,
                    a.2 + s.connects_requested,
                    a.3 + s.suspicions,
                )
            });
            println!(
                "round {r}: complete {complete}/{n} min catalog {min} maxconn {} comps {:?} (n={}) failed {} refut {} dials {} susp {}",
                sim.max_connections(), csz, cs.len(), st.0, st.1, st.2, st.3
            );
            if cs.len() > 1 {
                let s = format!("{:?}", csz);
                if s != last_sizes {
                    last_sizes = s;
                    for (k, c) in cs.iter().enumerate().skip(1).take(3) {
                        let set: BTreeSet<usize> = c.iter().copied().collect();
                        // island members: how many outsiders they know
                        let out_known: Vec<usize> = c
                            .iter()
                            .map(|i| {
                                sim.nodes[*i]
                                    .catalog()
                                    .iter()
                                    .filter(|p| {
                                        idx.get(&p.record().node_id)
                                            .is_some_and(|j| !set.contains(j))
                                    })
                                    .count()
                            })
                            .collect();
                        // outsiders: how many island members they know
                        let others: Vec<usize> =
                            alive.iter().filter(|i| !set.contains(i)).copied().collect();
                        let in_known: Vec<usize> = others
                            .iter()
                            .map(|i| {
                                sim.nodes[*i]
                                    .catalog()
                                    .iter()
                                    .filter(|p| {
                                        idx.get(&p.record().node_id)
                                            .is_some_and(|j| set.contains(j))
                                    })
                                    .count()
                            })
                            .collect();
                        let passive_out: usize = c
                            .iter()
                            .map(|i| {
                                sim.nodes[*i]
                                    .passive()
                                    .iter()
                                    .filter(|p| !set.contains(&idx[*p]))
                                    .count()
                            })
                            .sum();
                        for &m in c.iter() {
                            let p = contact[m];
                            if p != usize::MAX && !set.contains(&p) {
                                println!("    tree edge out: {m} (active {}, knows contact {}) -> contact {p} (active {}, knows child {}, child passive {}, contact passive {})",
                                    sim.nodes[m].active().len(), sim.nodes[m].catalog().contains(&sim.id(p)),
                                    sim.nodes[p].active().len(), sim.nodes[p].catalog().contains(&sim.id(m)),
                                    sim.nodes[m].passive().contains(&sim.id(p)), sim.nodes[p].passive().contains(&sim.id(m)));
                            }
                        }
                        let act: Vec<usize> =
                            c.iter().map(|i| sim.nodes[*i].active().len()).collect();
                        println!(
                            "  comp{k} size {}: members know outsiders min {} max {} mean {:.1}; outsiders know members min {} max {} mean {:.1}; passive entries pointing out {}; active sizes min {} max {}; members {:?}",
                            c.len(),
                            out_known.iter().min().unwrap(), out_known.iter().max().unwrap(),
                            out_known.iter().sum::<usize>() as f64 / c.len() as f64,
                            in_known.iter().min().unwrap(), in_known.iter().max().unwrap(),
                            in_known.iter().sum::<usize>() as f64 / others.len().max(1) as f64,
                            passive_out,
                            act.iter().min().unwrap(), act.iter().max().unwrap(),
                            &c[..c.len().min(12)]
                        );
                    }
                }
            }
            if conv {
                println!("converged at {r}");
                break;
            }
        }
        sim.step();
    }
}
