//! Walking a local tree to import it (`fvfsd migrate`, `fvfsc put -r`), and what such
//! an import leaves out: paths matching `--exclude` patterns or a `.fvfsignore` file
//! (gitignore syntax, matched by the `ignore` crate), and the contents of cache folders
//! marked by a `CACHEDIR.TAG` (<https://bford.info/cachedir/>).
//!
//! Invariants:
//! - Nothing here follows a symlink, and the only files opened are `.fvfsignore` and
//!   `CACHEDIR.TAG` when `lstat` says they are regular files (read with a size cap), so
//!   a FIFO or a device in the tree can never block the walk or be read.
//! - An importer opens the files the walk found with [`open_regular`], so a file swapped
//!   for a symlink, a FIFO or a device after the walk is refused, never followed, read
//!   or waited on.
//! - Names are visited in byte order, a folder before what it holds; a folder's
//!   subfolders are walked after its other names, in byte order too (migrate's stat
//!   cache reads alongside the walk in this order).
//! - An excluded folder is never listed: nothing below it is read, and it counts as one
//!   excluded entry.
//! - Precedence, first match wins: the command line's patterns, then the `.fvfsignore`
//!   files from the deepest folder up (a `!pattern` re-includes, as in git).

use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fvfs_node::path;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;

/// The name of the per-folder exclude files.
pub const IGNORE_FILE: &str = ".fvfsignore";
/// The name of the file that marks a cache folder.
pub const CACHE_TAG: &str = "CACHEDIR.TAG";
/// What a valid `CACHEDIR.TAG` starts with.
const CACHE_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";
/// The largest `.fvfsignore` read; a larger one is reported and not used.
const IGNORE_FILE_MAX: u64 = 1 << 20;

/// What an import leaves out: the flags of `fvfsd migrate` and `fvfsc put -r`, also
/// sent as JSON to a running daemon.
#[derive(clap::Args, serde::Serialize, serde::Deserialize, Clone, Debug, Default)]
pub struct ExcludeArgs {
    /// Leave out paths matching PATTERN (gitignore syntax, relative to each source:
    /// `node_modules`, `*.o`, `/build/`; `!PATTERN` keeps what a `.fvfsignore` would
    /// leave out). Repeatable.
    #[arg(long = "exclude", value_name = "PATTERN")]
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Read exclude patterns from FILE, one per line, as --exclude. Repeatable.
    #[arg(long = "exclude-file", value_name = "FILE")]
    #[serde(default)]
    pub exclude_file: Vec<PathBuf>,
    /// Import the contents of cache folders too (folders holding a valid CACHEDIR.TAG);
    /// by default only the tag file is imported from them.
    #[arg(long)]
    #[serde(default)]
    pub include_caches: bool,
    /// Do not read .fvfsignore files.
    #[arg(long)]
    #[serde(default)]
    pub no_ignore_files: bool,
}

/// Why the exclude rules could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ExcludeError {
    #[error("cannot read exclude file {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("exclude pattern {pattern:?} is not valid: {reason}")]
    Pattern { pattern: String, reason: String },
}

impl ExcludeArgs {
    /// Moves the patterns of `--exclude-file` files into `exclude`, so that the rules
    /// travel whole (a daemon does not read the caller's files).
    pub fn inline_files(&mut self) -> Result<(), ExcludeError> {
        for path in std::mem::take(&mut self.exclude_file) {
            let text = fs::read_to_string(&path).map_err(|source| ExcludeError::File {
                path: path.clone(),
                source,
            })?;
            self.exclude.extend(
                text.lines()
                    .map(str::trim_end)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        Ok(())
    }

    /// The rules, checked: every pattern must parse.
    pub fn rules(&self) -> Result<Rules, ExcludeError> {
        let mut args = self.clone();
        args.inline_files()?;
        for pattern in &args.exclude {
            GitignoreBuilder::new("/")
                .add_line(None, pattern)
                .map_err(|e| ExcludeError::Pattern {
                    pattern: pattern.clone(),
                    reason: e.to_string(),
                })?;
        }
        Ok(Rules {
            patterns: args.exclude,
            caches: !args.include_caches,
            files: !args.no_ignore_files,
        })
    }
}

/// Checked exclude rules, for any number of walks.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    patterns: Vec<String>,
    /// Whether cache folders are left out.
    caches: bool,
    /// Whether `.fvfsignore` files are read.
    files: bool,
}

/// What a walked path is.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    /// A symlink and its target.
    Symlink(Vec<u8>),
    /// A FIFO, socket or device.
    Special,
}

/// A path to import.
#[derive(Debug)]
pub struct Found {
    pub src: PathBuf,
    /// The folder holding it, open (for [`ToRead`]), unless [`MAX_OPEN_FOLDERS`]
    /// already were or it holds no file.
    pub folder: Option<Arc<Folder>>,
    /// Its path in fvfs.
    pub dest: Vec<u8>,
    /// Its `lstat`.
    pub meta: Metadata,
    pub kind: Kind,
}

/// What the walk tells its caller, in order.
#[derive(Debug)]
pub enum Event {
    Found(Box<Found>),
    /// A path not imported for a reason other than the rules (unreadable), or an
    /// exclude file that could not be used whole.
    Skipped {
        src: PathBuf,
        reason: String,
    },
}

/// One folder's `.fvfsignore`, above the folders it holds.
struct Layer {
    rules: Gitignore,
    parent: Option<Rc<Layer>>,
}

/// Whether the rules leave `path` out: the first matcher with an opinion decides.
/// Opens a file the walk listed to read its content, with its `fstat`: never through a
/// symlink (`O_NOFOLLOW`), never waiting on a FIFO or device put in its place
/// (`O_NONBLOCK`, which changes nothing for a regular file's reads), and only if it is
/// still a regular file (else an error saying so).
pub fn open_regular(path: &Path) -> std::io::Result<(File, Metadata)> {
    open_regular_at(rustix::fs::CWD, path)
}

/// A regular file a walk found, to read: its path, and the folder holding it if the
/// walk holds that open (see [`Found::folder`]).
#[derive(Clone, Debug)]
pub struct ToRead {
    pub path: PathBuf,
    folder: Option<Arc<Folder>>,
}

impl ToRead {
    /// `path`, in `folder` if given.
    pub fn new(path: PathBuf, folder: Option<Arc<Folder>>) -> Self {
        Self { path, folder }
    }

    /// [`open_regular`] of the file: by its one name in its open folder when there is
    /// one (the kernel then looks up one name instead of every folder of the path
    /// again), else by its path.
    pub fn open(&self) -> std::io::Result<(File, Metadata)> {
        match (&self.folder, self.path.file_name()) {
            (Some(folder), Some(name)) => open_regular_at(&folder.0, Path::new(name)),
            _ => open_regular(&self.path),
        }
    }
}

fn open_regular_at(folder: impl AsFd, name: &Path) -> std::io::Result<(File, Metadata)> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = File::from(rustix::fs::openat(folder, name, flags, Mode::empty())?);
    let meta = file.metadata()?;
    match meta.is_file() {
        true => Ok((file, meta)),
        false => Err(std::io::Error::other("not a regular file any more")),
    }
}

/// Folders a process holds open for its walks at most: the files in flight between a
/// walk and its readers hold theirs (every file in its own folder, as in
/// `node_modules`, on many cores, would otherwise take thousands of descriptors). Past
/// it, files are opened by their paths.
pub const MAX_OPEN_FOLDERS: usize = 256;
static OPEN_FOLDERS: AtomicUsize = AtomicUsize::new(0);

/// A folder a walk listed, open to open its files in (see [`ToRead`]).
#[derive(Debug)]
pub struct Folder(OwnedFd);

impl Drop for Folder {
    fn drop(&mut self) {
        OPEN_FOLDERS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `dir`, open (after its listing: a file then opened in it is checked against what
/// the listing's `lstat` said by its importer); `None` past [`MAX_OPEN_FOLDERS`] or if
/// it cannot be opened (its files are then opened by their paths).
fn open_folder(dir: &Path) -> Option<Arc<Folder>> {
    use rustix::fs::{Mode, OFlags};
    if OPEN_FOLDERS.fetch_add(1, Ordering::Relaxed) >= MAX_OPEN_FOLDERS {
        OPEN_FOLDERS.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::open(dir, flags, Mode::empty()) {
        Ok(fd) => Some(Arc::new(Folder(fd))),
        Err(_) => {
            OPEN_FOLDERS.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

fn excluded(cli: &Gitignore, layer: Option<&Rc<Layer>>, path: &Path, is_dir: bool) -> bool {
    let decide = |m: Match<_>| match m {
        Match::Ignore(_) => Some(true),
        Match::Whitelist(_) => Some(false),
        Match::None => None,
    };
    if let Some(d) = decide(cli.matched(path, is_dir)) {
        return d;
    }
    let mut at = layer;
    while let Some(l) = at {
        if let Some(d) = decide(l.rules.matched(path, is_dir)) {
            return d;
        }
        at = l.parent.as_ref();
    }
    false
}

/// Whether `dir` holds a valid cache tag.
fn is_cache(dir: &Path) -> bool {
    let tag = dir.join(CACHE_TAG);
    if !fs::symlink_metadata(&tag).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = [0u8; CACHE_SIGNATURE.len()];
    fs::File::open(&tag)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head == CACHE_SIGNATURE)
}

/// The `.fvfsignore` of `dir`, if it has a usable one, over `parent`.
fn layer(dir: &Path, parent: Option<Rc<Layer>>, emit: &mut dyn FnMut(Event)) -> Option<Rc<Layer>> {
    let path = dir.join(IGNORE_FILE);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() && m.len() <= IGNORE_FILE_MAX => {}
        Ok(m) if m.is_file() => {
            emit(Event::Skipped {
                src: path,
                reason: format!("exclude file larger than {IGNORE_FILE_MAX} bytes, not used"),
            });
            return parent;
        }
        _ => return parent,
    }
    let mut builder = GitignoreBuilder::new(dir);
    if let Some(e) = builder.add(&path) {
        emit(Event::Skipped {
            src: path.clone(),
            reason: format!("some exclude patterns were not used: {e}"),
        });
    }
    match builder.build() {
        Ok(rules) if !rules.is_empty() => Some(Rc::new(Layer { rules, parent })),
        Ok(_) => parent,
        Err(e) => {
            emit(Event::Skipped {
                src: path,
                reason: format!("exclude file not used: {e}"),
            });
            parent
        }
    }
}

/// The entries of `dir`, sorted by name. Each is `lstat`ed through the open folder
/// (`DirEntry::metadata`: `statx` of one name relative to the folder's descriptor), not
/// by its whole path, which the kernel would look up component by component again:
/// that was half of the walk's time.
fn read_names(dir: &Path) -> std::io::Result<Vec<(OsString, fs::DirEntry)>> {
    let mut names = fs::read_dir(dir)?
        .map(|e| e.map(|e| (e.file_name(), e)))
        .collect::<std::io::Result<Vec<_>>>()?;
    names.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(names)
}

/// Walks everything below `src` (not `src` itself), naming each path below `dest`;
/// returns how many entries the rules left out.
pub fn walk(src: &Path, dest: &[u8], rules: &Rules, emit: &mut dyn FnMut(Event)) -> u64 {
    let mut cli = GitignoreBuilder::new(src);
    for pattern in &rules.patterns {
        // Checked when the rules were made.
        let _ = cli.add_line(None, pattern);
    }
    let cli = cli.build().unwrap_or_else(|_| Gitignore::empty());
    let mut excluded_count = 0;
    let mut stack = vec![(src.to_path_buf(), dest.to_vec(), None::<Rc<Layer>>)];
    while let Some((dir, at, parent)) = stack.pop() {
        // Subfolders are walked after the folder's other names, in byte order.
        let mut below = Vec::new();
        let names = match read_names(&dir) {
            Ok(n) => n,
            Err(e) => {
                emit(Event::Skipped {
                    src: dir,
                    reason: format!("cannot list directory: {e}"),
                });
                continue;
            }
        };
        // Open for its files only (`d_type`, from the listing).
        let has_files = names
            .iter()
            .any(|(_, e)| e.file_type().is_ok_and(|t| t.is_file()));
        let folder = has_files.then(|| open_folder(&dir)).flatten();
        let layer = if rules.files && names.iter().any(|(n, _)| n == IGNORE_FILE) {
            layer(&dir, parent, emit)
        } else {
            parent
        };
        let cache = rules.caches && names.iter().any(|(n, _)| n == CACHE_TAG) && is_cache(&dir);
        for (name, entry) in names {
            if cache && name != CACHE_TAG {
                excluded_count += 1;
                continue;
            }
            let src = dir.join(&name);
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    emit(Event::Skipped {
                        src,
                        reason: format!("cannot stat: {e}"),
                    });
                    continue;
                }
            };
            let t = meta.file_type();
            if excluded(&cli, layer.as_ref(), &src, t.is_dir()) {
                excluded_count += 1;
                continue;
            }
            let dest = path::join(&at, name.as_bytes());
            // (`dest` is normalised: its length is what the tree would count.)
            let too_long = if name.len() > path::MAX_NAME {
                Some(path::NAME_TOO_LONG)
            } else if dest.len() > path::MAX_NEW_PATH {
                Some(path::PATH_TOO_LONG)
            } else {
                None
            };
            if let Some(why) = too_long {
                // Nothing below it could be kept either.
                emit(Event::Skipped {
                    src,
                    reason: format!("not kept: its path is {why}"),
                });
                continue;
            }
            let kind = if t.is_dir() {
                below.push((src.clone(), dest.clone(), layer.clone()));
                Kind::Dir
            } else if t.is_file() {
                Kind::File
            } else if t.is_symlink() {
                match fs::read_link(&src) {
                    Ok(target) => Kind::Symlink(target.into_os_string().into_vec()),
                    Err(e) => {
                        emit(Event::Skipped {
                            src,
                            reason: format!("cannot read symlink: {e}"),
                        });
                        continue;
                    }
                }
            } else {
                Kind::Special
            };
            emit(Event::Found(Box::new(Found {
                src,
                folder: folder.clone(),
                dest,
                meta,
                kind,
            })));
        }
        stack.extend(below.into_iter().rev());
    }
    excluded_count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            if path.ends_with('/') {
                fs::create_dir_all(&p).unwrap();
            } else {
                fs::write(&p, text).unwrap();
            }
        }
        dir
    }

    /// The fvfs paths a walk imports, and how many entries it left out.
    fn imported(dir: &Path, args: &ExcludeArgs) -> (Vec<String>, u64) {
        let mut found = Vec::new();
        let excluded = walk(dir, b"/in", &args.rules().unwrap(), &mut |e| match e {
            Event::Found(f) => found.push(String::from_utf8(f.dest).unwrap()),
            Event::Skipped { src, reason } => panic!("{}: {reason}", src.display()),
        });
        found.sort();
        (found, excluded)
    }

    #[test]
    fn only_regular_files_open_and_nothing_is_followed_or_waited_on() {
        let dir = tree(&[("file", "content"), ("sub/", "")]);
        let at = |name: &str| dir.path().join(name);
        std::os::unix::fs::symlink(at("file"), at("link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            at("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from(0o600),
            0,
        )
        .unwrap();
        let (mut file, meta) = open_regular(&at("file")).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!((text.as_str(), meta.len()), ("content", 7));
        let link = open_regular(&at("link")).unwrap_err();
        assert_eq!(
            link.raw_os_error(),
            Some(rustix::io::Errno::LOOP.raw_os_error())
        );
        for name in ["fifo", "sub"] {
            let e = open_regular(&at(name)).unwrap_err();
            assert_eq!(e.to_string(), "not a regular file any more", "{name}");
        }
        // Each name the walk found, opened in the folder the walk gives with it (every
        // one has it: far fewer than MAX_OPEN_FOLDERS are open).
        let mut opened = Vec::new();
        walk(dir.path(), b"/in", &Rules::default(), &mut |e| {
            let Event::Found(f) = e else { return };
            assert!(f.folder.is_some(), "{}", f.src.display());
            let name = f.src.file_name().unwrap().to_str().unwrap().to_owned();
            let found = ToRead::new(f.src, f.folder).open();
            let why = |e: std::io::Error| e.raw_os_error().map_or(e.to_string(), |n| n.to_string());
            opened.push((name, found.map(|(_, m)| m.len()).map_err(why)));
        });
        let not_regular = Err("not a regular file any more".to_string());
        let loops = Err(rustix::io::Errno::LOOP.raw_os_error().to_string());
        let want = [
            ("fifo", not_regular.clone()),
            ("file", Ok(7)),
            ("link", loops),
            ("sub", not_regular),
        ];
        let want: Vec<_> = want.into_iter().map(|(n, r)| (n.to_string(), r)).collect();
        assert_eq!(opened, want);
    }

    /// Files in flight hold their folders open up to MAX_OPEN_FOLDERS; past it they
    /// carry none and open by their paths; a folder dropped frees its place.
    #[test]
    fn open_folders_are_bounded_and_past_the_bound_files_open_by_path() {
        let folders = MAX_OPEN_FOLDERS + 44;
        let dir = tempfile::tempdir().unwrap();
        for i in 0..folders {
            let sub = dir.path().join(format!("d{i:04}"));
            fs::create_dir(&sub).unwrap();
            fs::write(sub.join("f"), format!("file {i}")).unwrap();
        }
        let mut held = Vec::new();
        walk(dir.path(), b"/in", &Rules::default(), &mut |e| match e {
            Event::Found(f) if f.kind == Kind::File => held.push(f),
            _ => {}
        });
        assert_eq!(held.len(), folders);
        let open = held.iter().filter(|f| f.folder.is_some()).count();
        assert!(open <= MAX_OPEN_FOLDERS, "{open} folders held open");
        assert!(folders - open >= 44, "{open} of {folders} open");
        for (i, f) in held.iter().enumerate() {
            let (mut file, _) = ToRead::new(f.src.clone(), f.folder.clone()).open().unwrap();
            let mut text = String::new();
            file.read_to_string(&mut text).unwrap();
            assert_eq!(text, format!("file {i}"));
        }
        drop(held);
        let mut again = Vec::new();
        walk(dir.path(), b"/in", &Rules::default(), &mut |e| match e {
            Event::Found(f) if f.kind == Kind::File => again.push(f.folder.is_some()),
            _ => {}
        });
        assert!(
            again[..MAX_OPEN_FOLDERS / 2].iter().all(|&o| o),
            "places not freed"
        );
    }

    fn patterns(p: &[&str]) -> ExcludeArgs {
        ExcludeArgs {
            exclude: p.iter().map(|s| s.to_string()).collect(),
            ..ExcludeArgs::default()
        }
    }

    #[test]
    fn command_line_patterns_match_anywhere_or_from_the_source() {
        let dir = tree(&[
            ("a/node_modules/x.js", ""),
            ("a/main.o", ""),
            ("a/main.c", ""),
            ("build/out", ""),
            ("a/build/keep", ""),
        ]);
        let (found, excluded) = imported(dir.path(), &patterns(&["node_modules", "*.o", "/build"]));
        assert_eq!(
            found,
            ["/in/a", "/in/a/build", "/in/a/build/keep", "/in/a/main.c"]
        );
        // node_modules and build count once each, whatever they hold.
        assert_eq!(excluded, 3);
    }

    #[test]
    fn ignore_files_apply_below_their_folder_and_deeper_ones_win() {
        let dir = tree(&[
            (".fvfsignore", "*.log\n"),
            ("top.log", ""),
            ("sub/.fvfsignore", "!keep.log\ntmp/\n"),
            ("sub/keep.log", ""),
            ("sub/drop.log", ""),
            ("sub/tmp/x", ""),
            ("other/tmp/x", ""),
        ]);
        let (found, excluded) = imported(dir.path(), &ExcludeArgs::default());
        assert_eq!(
            found,
            [
                "/in/.fvfsignore",
                "/in/other",
                "/in/other/tmp",
                "/in/other/tmp/x",
                "/in/sub",
                "/in/sub/.fvfsignore",
                "/in/sub/keep.log"
            ]
        );
        assert_eq!(excluded, 3);
        // The command line wins over the files, and the files can be turned off.
        let args = ExcludeArgs {
            exclude: vec!["keep.log".into()],
            no_ignore_files: true,
            ..ExcludeArgs::default()
        };
        let (found, _) = imported(dir.path(), &args);
        assert!(found.contains(&"/in/top.log".to_string()));
        assert!(!found.contains(&"/in/sub/keep.log".to_string()));
    }

    #[test]
    fn a_cache_folder_keeps_only_its_tag_and_a_false_tag_is_not_one() {
        let tag = "Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n";
        let dir = tree(&[
            ("cache/CACHEDIR.TAG", tag),
            ("cache/blob", ""),
            ("cache/deep/blob", ""),
            ("fake/CACHEDIR.TAG", "Signature: something else"),
            ("fake/blob", ""),
        ]);
        let (found, excluded) = imported(dir.path(), &ExcludeArgs::default());
        assert_eq!(
            found,
            [
                "/in/cache",
                "/in/cache/CACHEDIR.TAG",
                "/in/fake",
                "/in/fake/CACHEDIR.TAG",
                "/in/fake/blob"
            ]
        );
        assert_eq!(excluded, 2);
        let all = ExcludeArgs {
            include_caches: true,
            ..ExcludeArgs::default()
        };
        assert_eq!(imported(dir.path(), &all).0.len(), 8);
    }

    #[test]
    fn exclude_files_are_read_as_patterns_and_bad_input_is_named() {
        let dir = tree(&[("a.tmp", ""), ("b", ""), ("list", "# comment\n\n*.tmp\n")]);
        let args = ExcludeArgs {
            exclude_file: vec![dir.path().join("list")],
            ..ExcludeArgs::default()
        };
        let (found, excluded) = imported(dir.path(), &args);
        assert_eq!(found, ["/in/b", "/in/list"]);
        assert_eq!(excluded, 1);

        let missing = ExcludeArgs {
            exclude_file: vec![dir.path().join("nope")],
            ..ExcludeArgs::default()
        };
        let e = missing.rules().unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
        let e = patterns(&["x[z-a]"]).rules().unwrap_err().to_string();
        assert!(e.contains("x[z-a]"), "{e}");
    }

    #[test]
    fn a_bad_line_in_an_ignore_file_is_reported_and_the_rest_used() {
        let dir = tree(&[(".fvfsignore", "[z-a]\n*.tmp\n"), ("x.tmp", ""), ("y", "")]);
        let (mut found, mut skipped) = (Vec::new(), Vec::new());
        let excluded = walk(dir.path(), b"/", &Rules::default(), &mut |_| {});
        assert_eq!(
            excluded, 0,
            "Rules::default reads no files and excludes nothing"
        );
        let rules = ExcludeArgs::default().rules().unwrap();
        walk(dir.path(), b"/", &rules, &mut |e| match e {
            Event::Found(f) => found.push(f.dest),
            Event::Skipped { src, .. } => skipped.push(src),
        });
        assert_eq!(found, [b"/.fvfsignore".to_vec(), b"/y".to_vec()]);
        assert_eq!(skipped, [dir.path().join(IGNORE_FILE)]);
    }
}
