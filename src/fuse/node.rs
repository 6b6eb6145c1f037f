//! What a name or inode in the mount refers to (spec §3.2). Pure: no I/O.
//!
//! Inodes are derived, not allocated: the root is 1, `.lag` 2, `.primary` 3, and database
//! number `i` (in order of first sight, stable for the life of the process) owns the eight
//! inodes from `DB_INODE_BASE + 8 * i`, one per companion file. Nothing needs forgetting.

use crate::store::FileKind;

pub const ROOT_INODE: u64 = 1;
pub const LAG_INODE: u64 = 2;
pub const PRIMARY_INODE: u64 = 3;
pub const DB_INODE_BASE: u64 = 16;
const INODES_PER_DB: u64 = 8;

/// One of the names that belongs to a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbNode {
    File(FileKind),
    Pos,
    Lock,
}

impl DbNode {
    /// Every node of a database, in code order.
    pub const ALL: [DbNode; 6] = [
        DbNode::File(FileKind::Database),
        DbNode::File(FileKind::Journal),
        DbNode::File(FileKind::Wal),
        DbNode::File(FileKind::Shm),
        DbNode::Pos,
        DbNode::Lock,
    ];

    fn code(self) -> u64 {
        match self {
            DbNode::File(FileKind::Database) => 0,
            DbNode::File(FileKind::Journal) => 1,
            DbNode::File(FileKind::Wal) => 2,
            DbNode::File(FileKind::Shm) => 3,
            DbNode::Pos => 4,
            DbNode::Lock => 5,
        }
    }

    fn from_code(code: u64) -> Option<DbNode> {
        Some(match code {
            0 => DbNode::File(FileKind::Database),
            1 => DbNode::File(FileKind::Journal),
            2 => DbNode::File(FileKind::Wal),
            3 => DbNode::File(FileKind::Shm),
            4 => DbNode::Pos,
            5 => DbNode::Lock,
            _ => return None,
        })
    }

    pub fn suffix(self) -> &'static str {
        match self {
            DbNode::File(FileKind::Database) => "",
            DbNode::File(FileKind::Journal) => "-journal",
            DbNode::File(FileKind::Wal) => "-wal",
            DbNode::File(FileKind::Shm) => "-shm",
            DbNode::Pos => "-pos",
            DbNode::Lock => "-lock",
        }
    }
}

/// Splits a mount name into database name and node, by suffix in LiteFS's order.
pub fn parse_name(name: &str) -> (&str, DbNode) {
    const SUFFIXES: [DbNode; 5] = [
        DbNode::File(FileKind::Journal),
        DbNode::File(FileKind::Wal),
        DbNode::File(FileKind::Shm),
        DbNode::Pos,
        DbNode::Lock,
    ];
    for node in SUFFIXES {
        if let Some(db) = name.strip_suffix(node.suffix()) {
            return (db, node);
        }
    }
    (name, DbNode::File(FileKind::Database))
}

pub fn db_inode(db_index: u32, node: DbNode) -> u64 {
    DB_INODE_BASE + u64::from(db_index) * INODES_PER_DB + node.code()
}

/// The database index and node of a database inode.
pub fn split_db_inode(inode: u64) -> Option<(u32, DbNode)> {
    let rel = inode.checked_sub(DB_INODE_BASE)?;
    let index = u32::try_from(rel / INODES_PER_DB).ok()?;
    Some((index, DbNode::from_code(rel % INODES_PER_DB)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_by_suffix_in_order() {
        assert_eq!(parse_name("db"), ("db", DbNode::File(FileKind::Database)));
        assert_eq!(
            parse_name("db-journal"),
            ("db", DbNode::File(FileKind::Journal))
        );
        assert_eq!(parse_name("db-wal"), ("db", DbNode::File(FileKind::Wal)));
        assert_eq!(parse_name("db-shm"), ("db", DbNode::File(FileKind::Shm)));
        assert_eq!(parse_name("db-pos"), ("db", DbNode::Pos));
        assert_eq!(parse_name("db-lock"), ("db", DbNode::Lock));
        assert_eq!(
            parse_name("foo.txt"),
            ("foo.txt", DbNode::File(FileKind::Database))
        );
        assert_eq!(
            parse_name("a-wal-journal"),
            ("a-wal", DbNode::File(FileKind::Journal))
        );
    }

    #[test]
    fn inodes_round_trip() {
        for index in [0u32, 1, 77, u32::MAX] {
            for code in 0..6 {
                let node = DbNode::from_code(code).unwrap();
                assert_eq!(split_db_inode(db_inode(index, node)), Some((index, node)));
            }
        }
        assert_eq!(split_db_inode(ROOT_INODE), None);
        assert_eq!(split_db_inode(DB_INODE_BASE + 6), None);
    }
}
