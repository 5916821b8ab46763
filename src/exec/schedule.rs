//! The scheduler: which node may start next, and what a finished node decides for the rest.
//! It knows nodes only as indexes with needs and weights — nothing of builds, processes or
//! registries — so ordering, failure propagation and stopping are tested without any of them.

use std::collections::BinaryHeap;

/// How a node ended, as far as scheduling cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its dependents may run.
    Succeeded,
    /// Its dependents are skipped, and without `--keep-going` nothing more starts.
    Failed,
    /// Not succeeded for another reason (interrupted): dependents skipped, no stop of its own.
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done,
    Skipped,
}

pub struct Scheduler {
    dependents: Vec<Vec<usize>>,
    priority: Vec<f64>,
    remaining: Vec<usize>,
    state: Vec<State>,
    ready: BinaryHeap<Ready>,
    keep_going: bool,
    stopping: bool,
}

impl Scheduler {
    /// `needs[i]`: the nodes `i` waits for (indexes below `i`: plan order is topological);
    /// `weights[i]`: its estimated cost. Ready nodes start longest remaining path first, then
    /// in plan order.
    pub fn new(needs: &[Vec<usize>], weights: &[f64], keep_going: bool) -> Scheduler {
        let n = needs.len();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, ns) in needs.iter().enumerate() {
            for &j in ns {
                dependents[j].push(i);
            }
        }
        let mut priority = vec![0.0f64; n];
        for i in (0..n).rev() {
            let below = dependents[i]
                .iter()
                .map(|&d| priority[d])
                .fold(0.0, f64::max);
            priority[i] = weights.get(i).copied().unwrap_or(0.0) + below;
        }
        let remaining: Vec<usize> = needs.iter().map(Vec::len).collect();
        let ready = remaining
            .iter()
            .enumerate()
            .filter(|(_, r)| **r == 0)
            .map(|(i, _)| Ready {
                priority: priority[i],
                seq: i,
            })
            .collect();
        Scheduler {
            dependents,
            priority,
            remaining,
            state: vec![State::Waiting; n],
            ready,
            keep_going,
            stopping: false,
        }
    }

    /// The next node to start, marked running; `None` when none is ready or the run stops.
    pub fn start_next(&mut self) -> Option<usize> {
        if self.stopping {
            return None;
        }
        let Ready { seq, .. } = self.ready.pop()?;
        self.state[seq] = State::Running;
        Some(seq)
    }

    /// Record how `i` ended. Returns the nodes skipped because of it — every dependent, however
    /// far down, not decided yet — each with the need it waited for.
    pub fn finish(&mut self, i: usize, outcome: Outcome) -> Vec<(usize, usize)> {
        self.state[i] = State::Done;
        if outcome == Outcome::Succeeded {
            for &d in &self.dependents[i] {
                self.remaining[d] -= 1;
                if self.remaining[d] == 0 && self.state[d] == State::Waiting {
                    self.ready.push(Ready {
                        priority: self.priority[d],
                        seq: d,
                    });
                }
            }
            return Vec::new();
        }
        if outcome == Outcome::Failed && !self.keep_going {
            self.stopping = true;
        }
        let mut skipped = Vec::new();
        let mut stack: Vec<(usize, usize)> = self.dependents[i].iter().map(|&d| (d, i)).collect();
        while let Some((d, because)) = stack.pop() {
            if self.state[d] != State::Waiting {
                continue;
            }
            self.state[d] = State::Skipped;
            skipped.push((d, because));
            stack.extend(self.dependents[d].iter().map(|&x| (x, d)));
        }
        skipped
    }

    /// Cancellation: nothing more starts; running nodes finish as they do.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Nodes that never started and were not skipped (the run stopped first).
    pub fn not_run(&self) -> impl Iterator<Item = usize> + '_ {
        self.state
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == State::Waiting)
            .map(|(i, _)| i)
    }
}

/// Ready nodes: highest priority (longest remaining path) first, then plan order.
#[derive(PartialEq)]
struct Ready {
    priority: f64,
    seq: usize,
}

impl Eq for Ready {}

impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ready {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority
            .total_cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drain the scheduler one node at a time, every node ending with `outcome(i)`.
    fn walk(s: &mut Scheduler, outcome: impl Fn(usize) -> Outcome) -> Vec<usize> {
        let mut order = Vec::new();
        while let Some(i) = s.start_next() {
            order.push(i);
            s.finish(i, outcome(i));
        }
        order
    }

    #[test]
    fn longest_remaining_path_first_then_plan_order() {
        // 0 and 1 are roots; 2 needs 1 and weighs most: 1 starts before 0 though later in
        // the plan. 3 and 4 are equal roots: plan order.
        let needs = vec![vec![], vec![], vec![1], vec![], vec![]];
        let weights = [1.0, 1.0, 10.0, 1.0, 1.0];
        let mut s = Scheduler::new(&needs, &weights, false);
        assert_eq!(walk(&mut s, |_| Outcome::Succeeded), [1, 2, 0, 3, 4]);
    }

    #[test]
    fn a_node_waits_for_every_need() {
        let needs = vec![vec![], vec![], vec![0, 1]];
        let mut s = Scheduler::new(&needs, &[1.0, 1.0, 1.0], false);
        let a = s.start_next().unwrap();
        let b = s.start_next().unwrap();
        assert_eq!(s.start_next(), None, "2 waits for both");
        s.finish(a, Outcome::Succeeded);
        assert_eq!(s.start_next(), None, "2 still waits");
        s.finish(b, Outcome::Succeeded);
        assert_eq!(s.start_next(), Some(2));
    }

    #[test]
    fn a_failure_skips_everything_downstream_and_stops_the_rest() {
        // 0 → 1 → 2, and 0 → 3; 4 independent.
        let needs = vec![vec![], vec![0], vec![1], vec![0], vec![]];
        let mut s = Scheduler::new(&needs, &[5.0, 1.0, 1.0, 1.0, 1.0], false);
        assert_eq!(s.start_next(), Some(0));
        let mut skipped = s.finish(0, Outcome::Failed);
        skipped.sort();
        assert_eq!(
            skipped,
            [(1, 0), (2, 1), (3, 0)],
            "each names what it waited for"
        );
        assert_eq!(
            s.start_next(),
            None,
            "without keep-going nothing more starts"
        );
        assert_eq!(s.not_run().collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn keep_going_runs_what_does_not_depend_on_the_failure() {
        let needs = vec![vec![], vec![0], vec![], vec![2]];
        let mut s = Scheduler::new(&needs, &[5.0, 1.0, 1.0, 1.0], true);
        let order = walk(&mut s, |i| {
            if i == 0 {
                Outcome::Failed
            } else {
                Outcome::Succeeded
            }
        });
        assert_eq!(order, [0, 2, 3]);
        assert_eq!(s.not_run().count(), 0);
    }

    #[test]
    fn a_node_skipped_by_one_need_never_starts_when_another_succeeds() {
        let needs = vec![vec![], vec![], vec![0, 1]];
        let mut s = Scheduler::new(&needs, &[1.0, 2.0, 1.0], true);
        assert_eq!(s.start_next(), Some(1));
        assert_eq!(s.start_next(), Some(0));
        assert_eq!(s.finish(0, Outcome::Failed), [(2, 0)]);
        assert!(s.finish(1, Outcome::Succeeded).is_empty());
        assert_eq!(s.start_next(), None);
    }

    #[test]
    fn cancellation_starts_nothing_more() {
        let needs = vec![vec![], vec![], vec![0]];
        let mut s = Scheduler::new(&needs, &[1.0, 1.0, 1.0], true);
        let first = s.start_next().unwrap();
        s.stop();
        assert_eq!(s.start_next(), None);
        // The running node ends interrupted: its dependent is skipped, not left to run.
        let skipped = s.finish(first, Outcome::Stopped);
        assert_eq!(s.start_next(), None);
        let not_run: Vec<usize> = s.not_run().collect();
        assert_eq!(skipped.len() + not_run.len(), 2, "{skipped:?} {not_run:?}");
    }
}
