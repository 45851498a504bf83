//! The fixture against real Garage servers (feature `integration`; Garage built by
//! `fvfs-garage install`): a node serves, stops, and comes back with its address, keys
//! and data; a cluster keeps serving with a node down, and the node catches up.

use fvfs_garage::{Garage, GarageCluster};

#[test]
fn a_node_stops_and_restarts_with_its_address_keys_and_data() {
    let mut garage = Garage::start().unwrap();
    let s3 = garage.s3();
    assert_eq!(s3.head_bucket().unwrap(), 200);
    s3.put_object("dir/a", b"first").unwrap();
    assert_eq!(s3.object("dir/a").unwrap(), b"first");

    garage.stop().unwrap();
    let refused = s3.head_bucket();
    assert!(refused.is_err(), "a stopped node answered: {refused:?}");

    garage.restart().unwrap();
    assert_eq!(garage.s3(), s3, "same endpoint, bucket and key");
    assert_eq!(s3.object("dir/a").unwrap(), b"first");
    s3.put_object("dir/b", b"second").unwrap();
    assert_eq!(s3.object("dir/b").unwrap(), b"second");
}

#[test]
fn a_wrong_secret_is_refused() {
    let garage = Garage::start().unwrap();
    let mut s3 = garage.s3();
    s3.secret = "0".repeat(64);
    assert_eq!(s3.head_bucket().unwrap(), 403);
    assert!(s3.put_object("x", b"x").is_err());
}

#[test]
fn a_cluster_serves_with_a_node_down_and_the_node_catches_up() {
    let mut cluster = GarageCluster::start(3).unwrap();
    for k in 1..=3 {
        assert_eq!(cluster.node_s3(k).head_bucket().unwrap(), 200, "node {k}");
    }
    let first = cluster.s3();
    first.put_object("before", b"all three up").unwrap();

    cluster.stop_node(3).unwrap();
    assert!(cluster.node_s3(3).head_bucket().is_err(), "node 3 is down");
    // Quorum is 2 of 3: writes and reads go on.
    first.put_object("during", b"node 3 down").unwrap();
    assert_eq!(cluster.node_s3(2).object("during").unwrap(), b"node 3 down");

    cluster.restart_node(3).unwrap();
    let third = cluster.node_s3(3);
    assert_eq!(third.object("before").unwrap(), b"all three up");
    assert_eq!(third.object("during").unwrap(), b"node 3 down");
}
