//! The search of the model check: a depth-first search over the states of a
//! [`Model`](super::Model), each kept as a fingerprint, counting the interleavings.

use std::collections::hash_map::{Entry, HashMap};

use super::{Explored, Model, Scenario, State, Thread, ITEMS, MEMBERS, PAST, STAMPED, THREADS};

impl Scenario {
    /// Explores every interleaving; panics with the interleaving at a violation.
    pub(super) fn check(&self) -> Explored {
        self.search(false)
    }

    /// `check`, keeping every state to make sure no two share a fingerprint.
    pub(super) fn check_fingerprints(&self) -> Explored {
        self.search(true)
    }

    fn search(&self, keep_states: bool) -> Explored {
        let mut search = Search {
            model: Model {
                scenario: self,
                world: self.world(),
            },
            states: keep_states.then(HashMap::default),
            seen: HashMap::default(),
            trace: Vec::new(),
            explored: Explored::default(),
        };
        search.explored.interleavings = search.visit(self.start());
        search.explored.states = search.seen.len();
        let bits = search.model.world.handled_by.get();
        search.explored.handled_by = (0..MEMBERS)
            .flat_map(|m| (0..ITEMS).map(move |n| (m, n)))
            .filter(|(m, n)| bits & 1 << (m * ITEMS + n) != 0)
            .collect();
        search.explored
    }
}

/// A state's fingerprint: 128 bits from two 64-bit hashes fed in one pass, each word
/// mixed by a folded 128-bit multiply (foldhash's step) with its own constants. The
/// search keeps these instead of the states, as TLC keeps 64-bit ones: for the few
/// hundred thousand states here the odds of a collision are about 10⁻²⁸, and
/// `fingerprints_do_not_collide` (ignored: it keeps every state) checks there is none.
fn fingerprint(state: &State) -> u128 {
    use std::hash::{Hash, Hasher};
    struct Fingerprint(u64, u64);
    fn fold(a: u64, b: u64) -> u64 {
        let product = u128::from(a) * u128::from(b);
        (product as u64) ^ (product >> 64) as u64
    }
    impl Hasher for Fingerprint {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &byte in bytes {
                self.write_u64(u64::from(byte));
            }
        }
        fn write_u8(&mut self, n: u8) {
            self.write_u64(u64::from(n));
        }
        fn write_usize(&mut self, n: usize) {
            self.write_u64(n as u64);
        }
        fn write_isize(&mut self, n: isize) {
            self.write_u64(n as u64);
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = fold(self.0 ^ n, 0x9E37_79B9_7F4A_7C15);
            self.1 = fold(self.1 ^ n ^ 0x5851_F42D_4C95_7F2D, 0xC2B2_AE3D_27D4_EB4F);
        }
    }
    let mut hasher = Fingerprint(0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7344);
    state.hash(&mut hasher);
    u128::from(hasher.0) << 64 | u128::from(hasher.1)
}

/// The depth-first search of one scenario.
struct Search<'a> {
    model: Model<'a>,
    /// The fingerprint of each visited state, and the interleavings from it to an end
    /// (`None`: it is on the current path, so meeting it again is a cycle).
    seen: HashMap<u128, Option<u128>, foldhash::fast::FixedState>,
    /// With `check_fingerprints`: every state, by fingerprint, to prove that none
    /// collided.
    states: Option<HashMap<u128, State, foldhash::fast::FixedState>>,
    /// The steps that led to the current state: the thread, where it was, the time.
    trace: Vec<(usize, Thread, u64)>,
    explored: Explored,
}

impl Search<'_> {
    fn visit(&mut self, state: State) -> u128 {
        let key = fingerprint(&state);
        if let Some(states) = &mut self.states {
            let kept = *states.entry(key).or_insert(state);
            assert_eq!(kept, state, "two states with one fingerprint");
        }
        match self.seen.entry(key) {
            Entry::Occupied(seen) => match *seen.get() {
                Some(paths) => return paths,
                None => self.fail("a cycle: the protocol can loop forever", &state),
            },
            Entry::Vacant(new) => new.insert(None),
        };
        if let Err(what) = self.model.check_always(&state) {
            self.fail(&what, &state);
        }
        let mut paths = 0;
        let mut stepped = false;
        for t in 0..THREADS {
            for choice in 0..self.model.moves(&state, t) {
                stepped = true;
                let (within, read) = self.model.step(&state, t, choice, STAMPED);
                // A step that read the clock: once within the grace, once past it.
                let past = read
                    .then(|| self.model.step(&state, t, choice, PAST).0)
                    .filter(|past| *past != within);
                for (next, now) in [(Some(within), STAMPED), (past, PAST)] {
                    let Some(next) = next else { continue };
                    self.trace.push((t, state.threads[t], now));
                    paths += self.visit(next);
                    self.trace.pop();
                }
            }
        }
        if !stepped {
            if let Err(what) = self.model.check_end(&state) {
                self.fail(&what, &state);
            }
            self.explored.ends += 1;
            paths = 1;
        }
        self.seen.insert(key, Some(paths));
        paths
    }

    fn fail(&self, what: &str, s: &State) -> ! {
        let steps: Vec<String> = self
            .trace
            .iter()
            .map(|(t, at, now)| {
                let time = if *now == PAST {
                    " (past the grace)"
                } else {
                    ""
                };
                let who = match t {
                    t if *t < ITEMS => "publisher",
                    t if *t < ITEMS + MEMBERS => "member",
                    _ => "registry",
                };
                format!("{who}: {at:?}{time}")
            })
            .collect();
        panic!(
            "{}: {what}\ninterleaving ({} steps):\n  {}\nend state: {s:?}",
            self.model.scenario.name,
            steps.len(),
            steps.join("\n  ")
        );
    }
}
