//! Owners as the tree stores them and as this machine numbers them: a client whose
//! user and group ids differ from those of the machines that wrote the tree maps them
//! (`fvfsc mount --map-uid STORED:LOCAL --map-gid STORED:LOCAL`). Ids not mapped pass
//! unchanged in both directions.

/// Pairs of (stored, local) ids, for users and for groups.
#[derive(Clone, Debug, Default)]
pub struct IdMap {
    pub uids: Vec<(u32, u32)>,
    pub gids: Vec<(u32, u32)>,
}

fn to_local(pairs: &[(u32, u32)], stored: u32) -> u32 {
    pairs
        .iter()
        .find(|(s, _)| *s == stored)
        .map_or(stored, |(_, l)| *l)
}

fn to_stored(pairs: &[(u32, u32)], local: u32) -> u32 {
    pairs
        .iter()
        .find(|(_, l)| *l == local)
        .map_or(local, |(s, _)| *s)
}

impl IdMap {
    /// (uid, gid) as stored, shown on this machine.
    pub fn local(&self, (uid, gid): (u32, u32)) -> (u32, u32) {
        (to_local(&self.uids, uid), to_local(&self.gids, gid))
    }

    /// (uid, gid) of this machine, as stored.
    pub fn stored(&self, (uid, gid): (u32, u32)) -> (u32, u32) {
        (self.stored_uid(uid), self.stored_gid(gid))
    }

    pub fn stored_uid(&self, local: u32) -> u32 {
        to_stored(&self.uids, local)
    }

    pub fn stored_gid(&self, local: u32) -> u32 {
        to_stored(&self.gids, local)
    }
}

/// `STORED:LOCAL`, as `--map-uid` and `--map-gid` take it.
pub fn parse_pair(s: &str) -> Result<(u32, u32), String> {
    let (stored, local) = s
        .split_once(':')
        .ok_or_else(|| format!("{s}: give STORED:LOCAL, e.g. 1000:501"))?;
    let id = |v: &str| v.parse::<u32>().map_err(|e| format!("{v}: {e}"));
    Ok((id(stored)?, id(local)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ids_go_both_ways_and_others_pass() {
        let map = IdMap {
            uids: vec![(1000, 501)],
            gids: vec![(100, 20)],
        };
        assert_eq!(map.local((1000, 100)), (501, 20));
        assert_eq!(map.stored((501, 20)), (1000, 100));
        assert_eq!(map.local((7, 8)), (7, 8));
        assert_eq!(map.stored((7, 8)), (7, 8));
        assert_eq!(parse_pair("1000:501"), Ok((1000, 501)));
        assert!(parse_pair("1000").is_err());
        assert!(parse_pair("a:1").is_err());
    }
}
