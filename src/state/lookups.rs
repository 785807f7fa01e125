//! Which directory entries decide what the state file's path names.
//!
//! Resolving `/srv/app/current/state.yaml`, where `current -> releases/7`, looks up `srv`
//! in `/`, `app` in `/srv`, `current` in `/srv/app`, then (following the symlink)
//! `releases` in `/srv/app`, `7` in `/srv/app/releases`, and `state.yaml` in
//! `/srv/app/releases/7`. A change to any of those entries can make the path name another
//! file: deleting or renaming a directory, swapping a symlink (a release switch, a
//! Kubernetes ConfigMap update), replacing the file. The watcher watches every directory
//! in that list, so each such change is an event, and resolves the path again after one.
//!
//! Every directory here is a real one (no symlink in it): two paths to one directory would
//! be one inotify watch, and unwatching one would silently unwatch the other.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// One lookup of `name` in the directory `dir` while resolving the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub dir: PathBuf,
    pub name: OsString,
}

/// More symlinks than this in one resolution is a loop (Linux's own limit is 40).
const MAX_SYMLINKS: usize = 40;

/// Every lookup made resolving `path` (absolute), in order. Stops at the first entry that
/// does not exist (its lookup included: its creation is what to watch for), or at a
/// symlink loop.
pub fn lookups(path: &Path) -> Vec<Lookup> {
    let mut out = Vec::new();
    // The names still to look up, the next one last.
    let mut stack: Vec<OsString> = Vec::new();
    push_components(&mut stack, path);
    let mut dir = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = stack.pop() {
        if name == "/" {
            dir = PathBuf::from("/");
            continue;
        }
        if name == ".." {
            dir.pop();
            continue;
        }
        out.push(Lookup {
            dir: dir.clone(),
            name: name.clone(),
        });
        let next = dir.join(&name);
        let Ok(meta) = std::fs::symlink_metadata(&next) else {
            break;
        };
        if !meta.file_type().is_symlink() {
            dir = next;
            continue;
        }
        links += 1;
        match std::fs::read_link(&next) {
            Ok(target) if links <= MAX_SYMLINKS => push_components(&mut stack, &target),
            _ => break,
        }
    }
    out
}

/// Pushes `path`'s components so that the first is popped first (`/` for the root).
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    for c in path.components().rev() {
        stack.push(match c {
            Component::RootDir | Component::Prefix(_) => "/".into(),
            Component::CurDir => continue,
            Component::ParentDir => "..".into(),
            Component::Normal(n) => n.to_owned(),
        });
    }
}

/// The directories of `lookups`, each once, in order.
pub fn dirs(lookups: &[Lookup]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for l in lookups {
        if !out.contains(&l.dir) {
            out.push(l.dir.clone());
        }
    }
    out
}

/// Whether an event at `path` (a watched directory's entry, or the directory itself) can
/// change what the state file's path names or holds.
pub fn touches(lookups: &[Lookup], path: &Path) -> bool {
    let entry = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => lookups.iter().any(|l| l.dir == dir && l.name == name),
        _ => false,
    };
    entry || lookups.iter().any(|l| l.dir == path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn names(lookups: &[Lookup], root: &Path) -> Vec<String> {
        lookups
            .iter()
            .filter_map(|l| {
                let dir = l.dir.strip_prefix(root).ok()?;
                Some(format!("{}:{}", dir.display(), l.name.to_string_lossy()))
            })
            .collect()
    }

    #[test]
    fn a_plain_path_is_looked_up_component_by_component() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("cfg")).unwrap();
        std::fs::write(root.join("cfg/state.yaml"), "").unwrap();
        let l = lookups(&root.join("cfg/state.yaml"));
        assert_eq!(names(&l, &root), [":cfg", "cfg:state.yaml"]);
        assert!(
            l.iter().any(|x| x.dir == Path::new("/")),
            "from the root down"
        );
    }

    #[test]
    fn a_symlinked_directory_adds_its_target_s_lookups() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("releases/7")).unwrap();
        std::fs::write(root.join("releases/7/state.yaml"), "").unwrap();
        symlink("releases/7", root.join("current")).unwrap();
        let l = lookups(&root.join("current/state.yaml"));
        assert_eq!(
            names(&l, &root),
            [
                ":current",
                ":releases",
                "releases:7",
                "releases/7:state.yaml"
            ]
        );
    }

    #[test]
    fn a_symlinked_file_adds_the_other_directory() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("b/real.yaml"), "").unwrap();
        symlink(root.join("b/real.yaml"), root.join("a/state.yaml")).unwrap();
        let l = lookups(&root.join("a/state.yaml"));
        let n = names(&l, &root);
        assert_eq!(n.first().map(String::as_str), Some(":a"));
        assert!(n.ends_with(&["a:state.yaml".into(), ":b".into(), "b:real.yaml".into()]));
        assert!(dirs(&l).contains(&root.join("b")));
    }

    #[test]
    fn resolution_stops_at_the_first_missing_entry() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let l = lookups(&root.join("gone/state.yaml"));
        assert_eq!(names(&l, &root), [":gone"]);
    }

    #[test]
    fn a_symlink_loop_ends() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        symlink("b", root.join("a")).unwrap();
        symlink("a", root.join("b")).unwrap();
        let l = lookups(&root.join("a/state.yaml"));
        assert!(l.len() < 100);
    }

    #[test]
    fn an_event_touches_the_path_if_it_is_one_of_its_entries_or_directories() {
        let l = vec![
            Lookup {
                dir: "/srv".into(),
                name: "current".into(),
            },
            Lookup {
                dir: "/srv/releases/7".into(),
                name: "state.yaml".into(),
            },
        ];
        assert!(touches(&l, Path::new("/srv/current")));
        assert!(touches(&l, Path::new("/srv/releases/7/state.yaml")));
        assert!(
            touches(&l, Path::new("/srv/releases/7")),
            "the directory itself"
        );
        assert!(!touches(&l, Path::new("/srv/other")));
        assert!(!touches(&l, Path::new("/srv/releases/7/notes.txt")));
    }
}
