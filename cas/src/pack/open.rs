//! Opening a pack store: creating it, recovering from a crash, and rebuilding or
//! checking its index against the segments.
//!
//! Recovery trusts the index and cuts the segments to it: every segment is cut back
//! to its synced length, and a segment the index does not know is removed (its
//! records were never synced, or a compaction moved them all before it crashed). An
//! index that is missing while segments exist is rebuilt from them by a scan.
//!
//! A full disk must not keep a store from opening: every store keeps a [`RESERVE`]
//! file while its disk has room for it twice over. An open that finds less room than
//! that deletes it first thing (so the index, and the manifest database opened after
//! the local store, have room to open and recovery can cut unsynced tails and give
//! their space back); an open that finds it missing and the room there writes it again.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use super::index::{self, Loc, Member, SegStat};
use super::scan::{self, Found};
use super::{
    block, lock, Inner, PackOptions, State, Writer, MARKER, MARKER_TEXT, REBUILDING, UPDATING,
};
use crate::kv::{Batch, Kv};
use crate::{platform, ChunkId, StoreError, StoreFault};

/// The reserve file of a store, and its size.
const RESERVE: &str = "reserve";
const RESERVE_BYTES: usize = 4 << 20;

pub(super) fn open(root: PathBuf, opts: PackOptions) -> Result<Inner, StoreError> {
    if free_bytes(&root) < 2 * RESERVE_BYTES as u64 {
        match fs::remove_file(root.join(RESERVE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::io("delete", root.join(RESERVE), e))
            }
            _ => {}
        }
    }
    let segments = root.join("segments");
    if !root.join(MARKER).exists() {
        create(&root, &segments)?;
    }
    let index_dir = super::PackStore::index_dir(&root);
    let mut had_index = Kv::exists(&index_dir);
    let kv = match Kv::open(&index_dir) {
        Ok(kv) => kv,
        // The index is derived from the segments: a damaged one is set aside, kept for
        // inspection, and rebuilt by scan.
        Err(e) if e.is_corruption() => {
            let aside = root.join(format!("index.damaged-{}", unix_secs()));
            tracing::warn!(
                "{e}: set aside as {} and rebuilt from the segments",
                aside.display()
            );
            fs::rename(&index_dir, &aside).map_err(|e| StoreError::io("rename", &index_dir, e))?;
            platform::sync_dir(&root).map_err(|e| StoreError::io("sync", &root, e))?;
            had_index = false;
            Kv::open(&index_dir).map_err(|e| StoreError::Unavailable(e.to_string()))?
        }
        Err(e) => return Err(StoreError::Unavailable(e.to_string())),
    };
    let mut inner = Inner {
        root,
        segments,
        kv,
        opts,
        state: Mutex::new(State::default()),
        pool: Mutex::new(Vec::new()),
        active: Mutex::new(Default::default()),
        next_seg: AtomicU32::new(1),
        readers: Mutex::new(HashMap::new()),
        sync_lock: Mutex::new(()),
        recompress_lock: Mutex::new(()),
        blocks: block::Cache::default(),
    };
    super::recompress::remove_unfinished(&inner.segments)?;
    let files = segment_files(&inner.segments)?;
    // An index that knows no segment while segments exist is no index (an engine can
    // come back empty from damaged files), nor is one whose rebuild was cut short:
    // rebuilt, never taken as "delete them all".
    let cut_short = inner.kv.contains(REBUILDING).map_err(|e| inner.kv_err(e))?;
    if (!had_index || cut_short || load_stats(&inner)?.is_empty()) && !files.is_empty() {
        rebuild(&inner)?;
    }
    let stats = load_stats(&inner)?;
    // A dense segment takes no puts again: fast-level frames appended to it would
    // never be recompressed.
    let dense = super::recompress::dense(&inner)?;
    let mut removed = false;
    let mut writers = Vec::new();
    for (seg, path) in &files {
        let Some(stat) = stats.get(seg) else {
            fs::remove_file(path).map_err(|e| StoreError::io("delete", path, e))?;
            removed = true;
            continue;
        };
        let file = File::options()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| StoreError::io("stat", path, e))?
            .len();
        if len > stat.synced_len {
            file.set_len(stat.synced_len)
                .and_then(|()| platform::sync_data(&file))
                .map_err(|e| StoreError::io("truncate", path, e))?;
        }
        if stat.synced_len < opts.segment_bytes
            && writers.len() < opts.max_open
            && !dense.contains(seg)
        {
            writers.push(Writer {
                seg: *seg,
                file: Arc::new(file),
                len: stat.synced_len.min(len),
            });
        }
    }
    if removed {
        platform::sync_dir(&inner.segments)
            .map_err(|e| StoreError::io("sync", &inner.segments, e))?;
    }
    let last = files
        .iter()
        .map(|(s, _)| *s)
        .chain(stats.keys().copied())
        .max()
        .unwrap_or(0);
    inner.next_seg = AtomicU32::new(last + 1);
    *lock(&inner.active) = writers.iter().map(|w| w.seg).collect();
    *lock(&inner.pool) = writers;
    if inner.kv.contains(UPDATING).map_err(|e| inner.kv_err(e))? {
        recount(&inner)?;
    }
    reload(&inner)?;
    // Ranges a sync noted and did not punch (a crash, a sync a delete forced).
    inner.punch_noted()?;
    keep_reserve(&inner.root);
    Ok(inner)
}

/// Bytes an unprivileged writer may still use on `root`'s file system (0 if unknown).
fn free_bytes(root: &Path) -> u64 {
    rustix::fs::statvfs(root).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize))
}

/// Writes the reserve file if it is missing and the disk has room for it and as much
/// again; a disk fuller than that keeps the space free for what opens after the store
/// (the manifest database, a check, a collection), and the next open tries again.
fn keep_reserve(root: &Path) {
    use std::io::Write;
    let path = root.join(RESERVE);
    if path.exists() || free_bytes(root) < 2 * RESERVE_BYTES as u64 {
        return;
    }
    let written = File::create(&path).and_then(|mut f| f.write_all(&vec![0; RESERVE_BYTES]));
    if written.is_err() {
        let _ = fs::remove_file(&path);
    }
}

/// Loads the segment statistics and totals from the index into memory.
fn reload(inner: &Inner) -> Result<(), StoreError> {
    let stats = load_stats(inner)?;
    let totals = inner
        .kv
        .get(index::TOTALS)
        .map_err(|e| inner.kv_err(e))?
        .and_then(|b| index::decode_totals(&b))
        .unwrap_or((0, 0));
    let mut st = lock(&inner.state);
    st.stats = stats;
    st.totals = totals;
    Ok(())
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Makes an empty pack store at `root` (refusing a foreign non-empty directory).
fn create(root: &Path, segments: &Path) -> Result<(), StoreError> {
    platform::create_private_dir(root).map_err(|e| StoreError::io("create", root, e))?;
    // A store being converted from the chunk-file layout holds that layout too.
    let legacy = super::is_legacy(root);
    let foreign = fs::read_dir(root)
        .map_err(|e| StoreError::io("read", root, e))?
        .filter_map(Result::ok)
        .any(|e| match e.file_name().to_str() {
            Some("segments" | "index") => false,
            // The seal's mark, or what a crash left of writing it.
            Some(n) if n.starts_with("SEALED") => false,
            Some(n) if n.starts_with("index.damaged-") => false,
            Some("FVFS-STORE" | "OPEN" | "damaged") => !legacy,
            Some(n) => !(legacy && n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit())),
            None => true,
        });
    if foreign {
        return Err(StoreError::Unavailable(format!(
            "{} is not empty and not an fvfs chunk store",
            root.display()
        )));
    }
    fs::create_dir_all(segments).map_err(|e| StoreError::io("create", segments, e))?;
    let marker = root.join(MARKER);
    let written = File::create(&marker).and_then(|mut f| {
        use std::io::Write;
        f.write_all(MARKER_TEXT.as_bytes())?;
        platform::sync_all(&f)
    });
    written.map_err(|e| StoreError::io("write", &marker, e))?;
    platform::sync_dir(root).map_err(|e| StoreError::io("sync", root, e))?;
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        platform::sync_dir(parent).map_err(|e| StoreError::io("sync", parent, e))?;
    }
    Ok(())
}

/// Segment numbers and paths in `dir`, in order.
pub(super) fn segment_files(dir: &Path) -> Result<Vec<(u32, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io("list", dir, e))? {
        let entry = entry.map_err(|e| StoreError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(seg) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        out.push((seg, entry.path()));
    }
    out.sort();
    Ok(out)
}

fn load_stats(inner: &Inner) -> Result<HashMap<u32, SegStat>, StoreError> {
    let mut stats = HashMap::new();
    for pair in inner.kv.scan_prefix(&[index::SEG_PREFIX], false) {
        let (k, v) = pair.map_err(|e| inner.kv_err(e))?;
        if let (Some(seg), Some(stat)) = (index::seg_of_key(&k), SegStat::decode(&v)) {
            stats.insert(seg, stat);
        }
    }
    Ok(stats)
}

/// Recomputes every segment's live counts and the totals from the locations.
fn recount(inner: &Inner) -> Result<(), StoreError> {
    let mut stats = load_stats(inner)?;
    for s in stats.values_mut() {
        s.live_bytes = 0;
        s.live_records = 0;
    }
    let mut totals = (0u64, 0u64);
    let mut members: HashMap<(u32, u64), u32> = HashMap::new();
    for pair in inner.kv.scan_prefix(&[index::LOC_PREFIX], false) {
        let (_, v) = pair.map_err(|e| inner.kv_err(e))?;
        let Some(loc) = Loc::decode(&v) else { continue };
        stats.entry(loc.seg).or_default().add(&loc);
        totals.0 += 1;
        totals.1 += loc.live_len();
        if loc.member.is_some() {
            *members.entry((loc.seg, loc.offset)).or_default() += 1;
        }
    }
    let mut batch = Batch::default();
    for pair in inner.kv.scan_prefix(&[index::BLOCK_PREFIX], false) {
        let (k, _) = pair.map_err(|e| inner.kv_err(e))?;
        if !index::decode_free_key(&k).is_some_and(|b| members.contains_key(&b)) {
            batch.remove(k);
        }
    }
    for ((seg, offset), n) in members {
        batch.insert(
            index::block_key(seg, offset).to_vec(),
            n.to_le_bytes().to_vec(),
        );
        inner.apply_if_full(&mut batch)?;
    }
    for (seg, s) in &stats {
        batch.insert(index::seg_key(*seg), s.encode().to_vec());
    }
    batch.insert(
        index::TOTALS,
        index::encode_totals(totals.0, totals.1).to_vec(),
    );
    batch.remove(UPDATING);
    // The last step of a rebuild too: the index is whole once this batch is in.
    batch.remove(REBUILDING);
    inner.kv.apply(batch).map_err(|e| inner.kv_err(e))?;
    inner.kv.flush_durable().map_err(|e| inner.kv_err(e))
}

/// Indexes every intact record of every segment that the index lacks or names
/// wrongly, then recounts. Records of deleted chunks whose bytes were not freed yet
/// come back as extra copies (never a loss; an offline gc removes them). Returns one
/// line per damaged range found.
fn rebuild(inner: &Inner) -> Result<Vec<StoreFault>, StoreError> {
    // Freed records still in place must not come back as live ones.
    inner.punch_noted()?;
    let mut problems = Vec::new();
    let mut damaged = std::collections::HashSet::new();
    let mut batch = Batch::default();
    batch.insert(UPDATING, Vec::new());
    batch.insert(REBUILDING, Vec::new());
    for (seg, path) in segment_files(&inner.segments)? {
        let file = File::open(&path).map_err(|e| StoreError::io("open", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| StoreError::io("stat", &path, e))?
            .len();
        let mut end = 0;
        scan::scan(&file, &path, len, |found| -> scan::Visited {
            match found {
                Found::Record {
                    offset,
                    header,
                    frame,
                    intact: true,
                } => {
                    let here = Loc::record(seg, offset, header.frame_len);
                    end = here.end();
                    for (id, loc) in chunks_in(here, &header.id, frame) {
                        let key = index::loc_key(&id);
                        let known = inner.kv.get(&key).map_err(|e| inner.kv_err(e))?;
                        if !known
                            .and_then(|b| Loc::decode(&b))
                            .is_some_and(|l| names(inner, &l, &id))
                        {
                            batch.insert(key.to_vec(), loc.encode());
                        }
                        inner.apply_if_full(&mut batch)?;
                    }
                }
                Found::Record {
                    offset,
                    header: _,
                    frame,
                    ..
                } if block::is_block(frame) => {
                    // The table may be whole where the payload is not: every chunk
                    // the block hides is named, and forgotten below.
                    damaged.insert((seg, offset));
                    let members = block::table(frame).map_or_else(Vec::new, |t| t.members);
                    problems.push(StoreFault::other(format!(
                        "segment {seg}: block at {offset} is damaged ({} chunks in it)",
                        members.len()
                    )));
                    problems.extend(members.into_iter().map(|(id, ..)| {
                        StoreFault::of(
                            id,
                            format!(
                                "segment {seg}: chunk {id} is in the damaged block at {offset}"
                            ),
                        )
                    }));
                }
                Found::Record { offset, header, .. } => {
                    damaged.insert((seg, offset));
                    problems.push(StoreFault::of(
                        header.id,
                        format!(
                            "segment {seg}: record of chunk {} at {offset} is damaged",
                            header.id
                        ),
                    ))
                }
                Found::Damaged { offset, len } => problems.push(StoreFault::other(format!(
                    "segment {seg}: {len} damaged bytes at {offset}"
                ))),
            }
            inner.apply_if_full(&mut batch)?;
            scan::MORE
        })?;
        let stat = SegStat {
            synced_len: end,
            ..SegStat::default()
        };
        batch.insert(index::seg_key(seg), stat.encode().to_vec());
        // Each segment's part is durable before the next is scanned: a rebuild cut
        // short starts again from the marker, and finds most of its work done.
        inner
            .kv
            .apply(std::mem::take(&mut batch))
            .map_err(|e| inner.kv_err(e))?;
        inner.kv.flush_durable().map_err(|e| inner.kv_err(e))?;
        crate::failpoint::hit("rebuild-segment");
    }
    inner.kv.apply(batch).map_err(|e| inner.kv_err(e))?;
    // Entries naming nothing intact (a lost segment, a damaged record) go.
    let mut batch = Batch::default();
    for pair in inner.kv.scan_prefix(&[index::LOC_PREFIX], false) {
        let (k, v) = pair.map_err(|e| inner.kv_err(e))?;
        let id = ChunkId::from_slice(&k[1..]).expect("32-byte key");
        let intact = Loc::decode(&v)
            .is_some_and(|l| !damaged.contains(&(l.seg, l.offset)) && names(inner, &l, &id));
        if !intact {
            batch.remove(k);
        }
    }
    inner.kv.apply(batch).map_err(|e| inner.kv_err(e))?;
    recount(inner)?;
    Ok(problems)
}

/// The chunks the intact record at `here` (named `id`, holding `frame`) holds, with
/// their locations: itself, or a block's members.
fn chunks_in(here: Loc, id: &ChunkId, frame: &[u8]) -> Vec<(ChunkId, Loc)> {
    if !block::is_block(frame) {
        return vec![(*id, here)];
    }
    let Some(table) = block::table(frame) else {
        return Vec::new();
    };
    let shares = block::shares(here.record_len(), &table.raw_lens());
    table
        .members
        .iter()
        .zip(shares)
        .enumerate()
        .map(|(index, ((member, ..), share))| {
            let at = Member {
                index: index as u32,
                share,
            };
            (
                *member,
                Loc {
                    member: Some(at),
                    ..here
                },
            )
        })
        .collect()
}

/// Whether the record at `loc` is an intact record of `id` (for a block's member:
/// the block's header, and its table naming `id` there; its payload was checked by
/// the scan that found it).
fn names(inner: &Inner, loc: &Loc, id: &ChunkId) -> bool {
    match loc.member {
        Some(_) => header_names(inner, loc, id),
        None => inner.read(id, *loc).is_ok(),
    }
}

/// Whether the record at `loc` has a whole header naming `id` (the frame is read
/// and verified by fsck's `--read-data`, not here).
/// Locations checked per sorted batch (about 12 MB of memory).
const CHECK_BATCH: usize = 1 << 18;

fn header_names(inner: &Inner, loc: &Loc, id: &ChunkId) -> bool {
    use super::record::{decode_header, HEADER_LEN};
    use std::os::unix::fs::FileExt;
    let table_part = loc.member.map_or(0, |m| {
        block::HEAD_LEN + block::ENTRY_LEN * (m.index as usize + 1)
    });
    let mut head = vec![0u8; HEADER_LEN + table_part];
    let read = inner
        .reader(loc.seg)
        .is_ok_and(|f| f.read_exact_at(&mut head, loc.offset).is_ok());
    read && decode_header(&head).is_some_and(|h| {
        h.frame_len == loc.frame_len
            && match loc.member {
                Some(m) => block::entry(&head[HEADER_LEN..], m.index) == Some(*id),
                None => h.id == *id,
            }
    })
}

/// [`crate::ChunkStore::check_store`] of a pack store: every location names a
/// record of its chunk inside its segment's synced length. The headers of the names
/// `read_elsewhere` picks are not read (the caller reads those records whole); their
/// locations are still checked against the synced lengths. With `repair`, the index
/// is rebuilt from the segments (and the problems it found are reported).
pub(super) fn check(
    inner: &Inner,
    repair: bool,
    read_elsewhere: &dyn Fn(&ChunkId) -> bool,
) -> Result<Vec<StoreFault>, StoreError> {
    let _one_at_a_time = lock(&inner.sync_lock);
    inner.sync_locked()?;
    let stats = lock(&inner.state).stats.clone();
    let mut problems = Vec::new();
    // Headers are read in file order, a batch at a time: in the index's (hash) order
    // every read would be a seek on a cold disk.
    let mut batch: Vec<(Loc, ChunkId)> = Vec::new();
    let check_batch = |batch: &mut Vec<(Loc, ChunkId)>, problems: &mut Vec<StoreFault>| {
        batch.sort_unstable_by_key(|(loc, _)| (loc.seg, loc.offset));
        for (loc, id) in batch.drain(..) {
            let within = stats
                .get(&loc.seg)
                .is_some_and(|s| loc.end() <= s.synced_len);
            if !within || !(read_elsewhere(&id) || header_names(inner, &loc, &id)) {
                problems.push(StoreFault::of(
                    id,
                    format!(
                        "index names chunk {id} at segment {} offset {}, where no intact record of it is",
                        loc.seg, loc.offset
                    ),
                ));
            }
        }
    };
    for pair in inner.kv.scan_prefix(&[index::LOC_PREFIX], false) {
        let (k, v) = pair.map_err(|e| inner.kv_err(e))?;
        let id = ChunkId::from_slice(&k[1..]).expect("32-byte key");
        match Loc::decode(&v) {
            Some(loc) => batch.push((loc, id)),
            None => problems.push(StoreFault::of(
                id,
                format!("index entry of chunk {id} is malformed"),
            )),
        }
        if batch.len() >= CHECK_BATCH {
            check_batch(&mut batch, &mut problems);
        }
    }
    check_batch(&mut batch, &mut problems);
    if repair {
        problems.extend(rebuild(inner)?);
        reload(inner)?;
    }
    Ok(problems)
}
