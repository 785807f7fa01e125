//! A line diff (Myers' O(ND) algorithm) and unified-style hunks, for `switchyard diff`.
//!
//! Resources differ in a few lines (a weight, an endpoint), so D is small and the diff is
//! fast even for a route configuration of thousands of lines. When D grows past a cap the
//! differing middle is shown as removed then added rather than searched further.

/// What happens to one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Line `old` of the old text is line `new` of the new text.
    Equal { old: usize, new: usize },
    /// Line `old` of the old text is removed.
    Delete { old: usize },
    /// Line `new` of the new text is added.
    Insert { new: usize },
}

/// Past this many differing lines the search stops (its memory grows with D²).
const MAX_EDITS: usize = 1000;

/// The edit script turning `a` into `b`, in order, with as many `Equal`s as possible (up
/// to [`MAX_EDITS`] differences).
pub fn diff<T: PartialEq>(a: &[T], b: &[T]) -> Vec<Edit> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (mid_a, mid_b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);

    let mut edits: Vec<Edit> = (0..prefix)
        .map(|i| Edit::Equal { old: i, new: i })
        .collect();
    let middle = myers(mid_a, mid_b).unwrap_or_else(|| {
        (0..mid_a.len())
            .map(|old| Edit::Delete { old })
            .chain((0..mid_b.len()).map(|new| Edit::Insert { new }))
            .collect()
    });
    edits.extend(middle.into_iter().map(|e| match e {
        Edit::Equal { old, new } => Edit::Equal {
            old: old + prefix,
            new: new + prefix,
        },
        Edit::Delete { old } => Edit::Delete { old: old + prefix },
        Edit::Insert { new } => Edit::Insert { new: new + prefix },
    }));
    let (a_end, b_end) = (a.len() - suffix, b.len() - suffix);
    edits.extend((0..suffix).map(|i| Edit::Equal {
        old: a_end + i,
        new: b_end + i,
    }));
    edits
}

/// Myers' greedy shortest edit script; `None` past [`MAX_EDITS`] differences.
fn myers<T: PartialEq>(a: &[T], b: &[T]) -> Option<Vec<Edit>> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max_d = (a.len() + b.len()).min(MAX_EDITS) as isize;
    let offset = max_d + 1;
    // v[k + offset]: the furthest x reached on diagonal k = x - y.
    let mut v = vec![0isize; 2 * max_d as usize + 3];
    // trace[d]: v on diagonals -d..=d as it was before step d, for the way back.
    let mut trace: Vec<Vec<isize>> = Vec::new();
    for d in 0..=max_d {
        trace.push(v[(offset - d) as usize..=(offset + d) as usize].to_vec());
        for k in (-d..=d).step_by(2) {
            let at = |k: isize| v[(k + offset) as usize];
            let mut x = if k == -d || (k != d && at(k - 1) < at(k + 1)) {
                at(k + 1)
            } else {
                at(k - 1) + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[(k + offset) as usize] = x;
            if x >= n && y >= m {
                return Some(backtrack(&trace, n, m));
            }
        }
    }
    None
}

fn backtrack(trace: &[Vec<isize>], n: isize, m: isize) -> Vec<Edit> {
    let mut edits = Vec::new();
    let (mut x, mut y) = (n, m);
    for d in (1..trace.len() as isize).rev() {
        let before = &trace[d as usize];
        let at = |k: isize| before[(k + d) as usize];
        let k = x - y;
        let prev_k = if k == -d || (k != d && at(k - 1) < at(k + 1)) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = at(prev_k);
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            edits.push(Edit::Equal {
                old: x as usize,
                new: y as usize,
            });
        }
        if x == prev_x {
            edits.push(Edit::Insert {
                new: (y - 1) as usize,
            });
        } else {
            edits.push(Edit::Delete {
                old: (x - 1) as usize,
            });
        }
        (x, y) = (prev_x, prev_y);
    }
    while x > 0 && y > 0 {
        x -= 1;
        y -= 1;
        edits.push(Edit::Equal {
            old: x as usize,
            new: y as usize,
        });
    }
    edits.reverse();
    edits
}

/// `a` -> `b` as unified-diff hunks (`@@ -l,s +l,s @@`, then ` `, `-` and `+` lines) with
/// `context` unchanged lines around each change. Empty when the texts are equal.
pub fn unified(a: &[&str], b: &[&str], context: usize) -> Vec<String> {
    let edits = diff(a, b);
    let changed: Vec<usize> = edits
        .iter()
        .enumerate()
        .filter(|(_, e)| !matches!(e, Edit::Equal { .. }))
        .map(|(i, _)| i)
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < changed.len() {
        // Grow the hunk while the next change is close enough to share context.
        let mut j = i;
        while j + 1 < changed.len() && changed[j + 1] - changed[j] <= 2 * context + 1 {
            j += 1;
        }
        let start = changed[i].saturating_sub(context);
        let end = (changed[j] + context + 1).min(edits.len());
        let hunk = &edits[start..end];
        let (old_start, new_start) = hunk_start(&edits, start);
        let old_len = hunk
            .iter()
            .filter(|e| !matches!(e, Edit::Insert { .. }))
            .count();
        let new_len = hunk
            .iter()
            .filter(|e| !matches!(e, Edit::Delete { .. }))
            .count();
        out.push(format!(
            "@@ -{} +{} @@",
            range(old_start, old_len),
            range(new_start, new_len)
        ));
        for e in hunk {
            out.push(match *e {
                Edit::Equal { old, .. } => format!(" {}", a[old]),
                Edit::Delete { old } => format!("-{}", a[old]),
                Edit::Insert { new } => format!("+{}", b[new]),
            });
        }
        i = j + 1;
    }
    out
}

/// The old and new line indexes (0-based) where a hunk starting at `edits[start]` begins.
fn hunk_start(edits: &[Edit], start: usize) -> (usize, usize) {
    let old = edits[..start]
        .iter()
        .filter(|e| !matches!(e, Edit::Insert { .. }))
        .count();
    let new = edits[..start]
        .iter()
        .filter(|e| !matches!(e, Edit::Delete { .. }))
        .count();
    (old, new)
}

/// `start,len` as unified diff writes it: 1-based, and for an empty range the line before.
fn range(start: usize, len: usize) -> String {
    if len == 0 {
        format!("{start},0")
    } else if len == 1 {
        format!("{}", start + 1)
    } else {
        format!("{},{len}", start + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rebuilds both sides from an edit script, checking it is well formed.
    fn apply<T: Clone + PartialEq + std::fmt::Debug>(a: &[T], b: &[T], edits: &[Edit]) {
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for e in edits {
            match *e {
                Edit::Equal { old: i, new: j } => {
                    assert_eq!(a[i], b[j]);
                    old.push(i);
                    new.push(j);
                }
                Edit::Delete { old: i } => old.push(i),
                Edit::Insert { new: j } => new.push(j),
            }
        }
        assert_eq!(old, (0..a.len()).collect::<Vec<_>>());
        assert_eq!(new, (0..b.len()).collect::<Vec<_>>());
    }

    fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
        let mut dp = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for i in 0..a.len() {
            for j in 0..b.len() {
                dp[i + 1][j + 1] = if a[i] == b[j] {
                    dp[i][j] + 1
                } else {
                    dp[i][j + 1].max(dp[i + 1][j])
                };
            }
        }
        dp[a.len()][b.len()]
    }

    #[test]
    fn edit_scripts_are_minimal_on_random_inputs() {
        // A tiny xorshift generator: deterministic, no dependency.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for _ in 0..500 {
            let a: Vec<u64> = (0..next(12)).map(|_| next(4)).collect();
            let b: Vec<u64> = (0..next(12)).map(|_| next(4)).collect();
            let edits = diff(&a, &b);
            apply(&a, &b, &edits);
            let equal = edits
                .iter()
                .filter(|e| matches!(e, Edit::Equal { .. }))
                .count();
            assert_eq!(equal, lcs_len(&a, &b), "{a:?} -> {b:?}");
        }
    }

    #[test]
    fn one_changed_line_is_one_hunk_with_context() {
        let a: Vec<String> = (1..=20).map(|i| format!("line {i}")).collect();
        let mut b = a.clone();
        b[9] = "line ten".to_owned();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let b: Vec<&str> = b.iter().map(String::as_str).collect();
        assert_eq!(
            unified(&a, &b, 2),
            [
                "@@ -8,5 +8,5 @@",
                " line 8",
                " line 9",
                "-line 10",
                "+line ten",
                " line 11",
                " line 12"
            ]
        );
    }

    #[test]
    fn distant_changes_get_separate_hunks_and_close_ones_share() {
        let a: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
        let mut b = a.clone();
        b[2] = "x".to_owned();
        b[5] = "y".to_owned();
        b[25] = "z".to_owned();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let b: Vec<&str> = b.iter().map(String::as_str).collect();
        let hunks: Vec<String> = unified(&a, &b, 3)
            .into_iter()
            .filter(|l| l.starts_with("@@"))
            .collect();
        assert_eq!(hunks, ["@@ -1,9 +1,9 @@", "@@ -23,7 +23,7 @@"]);
    }

    #[test]
    fn equal_texts_have_no_hunks() {
        assert!(unified(&["a", "b"], &["a", "b"], 3).is_empty());
    }

    #[test]
    fn too_many_differences_fall_back_to_remove_then_add() {
        let a: Vec<usize> = (0..3000).collect();
        let b: Vec<usize> = (10_000..13_000).collect();
        let edits = diff(&a, &b);
        apply(&a, &b, &edits);
        assert!(matches!(edits[0], Edit::Delete { old: 0 }));
        assert!(matches!(edits[3000], Edit::Insert { new: 0 }));
    }
}
