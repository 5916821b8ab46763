//! Graph checks and ordering with petgraph: cycles between image versions, and
//! the level/topological order of plan nodes.

use petgraph::algo::{astar, tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{EdgeRef, NodeFiltered};

use crate::diag::{Diag, Diagnostics};
use crate::manifest::model::{Dep, Model};

/// Every dependency cycle between image versions, one error per cycle naming each member.
pub fn check_cycles(model: &Model) -> Diagnostics {
    let mut g: DiGraph<usize, usize> = DiGraph::with_capacity(model.versions.len(), 0);
    let idx: Vec<NodeIndex> = (0..model.versions.len()).map(|i| g.add_node(i)).collect();
    for (i, v) in model.versions.iter().enumerate() {
        for (fi, f) in v.froms.iter().enumerate() {
            if let Dep::Image(base) = f.dep {
                // Edge dependent → base, weighted by the `from` that declares it.
                g.add_edge(idx[i], idx[base], fi);
            }
        }
    }
    let mut diags = Diagnostics::new();
    let mut sccs: Vec<Vec<NodeIndex>> = tarjan_scc(&g)
        .into_iter()
        .filter(|c| c.len() > 1 || g.contains_edge(c[0], c[0]))
        .collect();
    for c in &mut sccs {
        c.sort_by_key(|n| g[*n]);
    }
    sccs.sort_by_key(|c| g[c[0]]);
    for scc in sccs {
        let start = scc[0];
        let inside = NodeFiltered::from_fn(&g, |n| scc.contains(&n));
        // Shortest way around: start → successor → … → start.
        let mut succ: Vec<NodeIndex> = g.neighbors(start).filter(|n| scc.contains(n)).collect();
        succ.sort_by_key(|n| g[*n]);
        let path = succ
            .iter()
            .filter_map(|s| astar(&inside, *s, |n| n == start, |_| 1, |_| 0).map(|(_, p)| p))
            .min_by_key(Vec::len)
            .unwrap_or_default();
        let mut cycle = vec![start];
        cycle.extend(path);
        if cycle.last() != Some(&start) {
            cycle.push(start);
        }
        let names: Vec<String> = cycle
            .iter()
            .map(|n| format!("`{}`", model.versions[g[*n]].key))
            .collect();
        let mut members: Vec<&str> = scc
            .iter()
            .map(|n| model.versions[g[*n]].key.as_str())
            .collect();
        members.dedup();
        let mut diag_spans = Vec::new();
        for w in cycle.windows(2) {
            if let Some(e) = g.edges_connecting(w[0], w[1]).next() {
                let v = &model.versions[g[w[0]]];
                diag_spans.push((
                    v.froms[*e.weight()].span,
                    format!("`{}` needs `{}`", v.key, model.versions[g[w[1]]].key),
                ));
            }
        }
        let Some(((first_span, first_label), rest)) = diag_spans.split_first() else {
            continue;
        };
        let mut d = Diag::error(
            *first_span,
            format!("dependency cycle: {}", names.join(" → ")),
        )
        .label(first_label.clone())
        .help(format!(
            "images in the cycle: {}; remove one of these `from`s",
            crate::suggest::list(members.iter().copied())
        ));
        for (s, l) in rest {
            d = d.also(*s, l.clone());
        }
        diags.push(d);
    }
    diags
}

/// The level of each node given as `needs` lists (`needs[i]`: the nodes `i` needs): 0
/// without needs, else one more than the deepest need. Sorting by (level, creation order)
/// then gives a deterministic topological order.
pub fn levels(needs: &[Vec<usize>]) -> Vec<usize> {
    let mut g: DiGraph<(), ()> =
        DiGraph::with_capacity(needs.len(), needs.iter().map(Vec::len).sum());
    let idx: Vec<NodeIndex> = (0..needs.len()).map(|_| g.add_node(())).collect();
    for (i, ns) in needs.iter().enumerate() {
        for &n in ns {
            g.add_edge(idx[n], idx[i], ());
        }
    }
    // Node indexes are dense and in creation order, so `index()` is the position.
    let topo = toposort(&g, None).unwrap_or_else(|_| g.node_indices().collect());
    let mut level = vec![0usize; needs.len()];
    for n in &topo {
        let l = level[n.index()];
        for e in g.edges(*n) {
            let j = e.target().index();
            level[j] = level[j].max(l + 1);
        }
    }
    level
}
