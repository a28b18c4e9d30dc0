use super::*;

fn add(
    b: &mut TenantTableBuilder,
    host: &str,
    tenant: &str,
    tier: TierId,
    filer: &str,
) -> Result<(), AddError> {
    b.add_line(host, tenant, tier, filer)
}

fn host(s: &str) -> Host {
    crate::routing::host::normalize(s.as_bytes()).unwrap()
}

#[test]
fn same_is_equality() {
    let words: Vec<Vec<u8>> = (0..40)
        .flat_map(|n| {
            let a = vec![b'a'; n];
            let mut first = a.clone();
            let mut last = a.clone();
            if n > 0 {
                first[0] = b'b';
                last[n - 1] = b'b';
            }
            [a, first, last]
        })
        .collect();
    for a in &words {
        for b in &words {
            assert_eq!(same(a, b), a == b, "{a:?} {b:?}");
        }
    }
}

#[test]
fn a_tenant_costs_twelve_bytes() {
    assert_eq!(std::mem::size_of::<TenantRecord>(), 12);
}

#[test]
fn exact_then_longest_wildcard() {
    let mut b = TenantTableBuilder::default();
    add(&mut b, "example.com", "t1", 0, "f1").unwrap();
    add(&mut b, "www.example.com", "t1", 0, "f1").unwrap();
    add(&mut b, "*.example.com", "t2", 1, "f2").unwrap();
    add(&mut b, "*.shop.example.com", "t3", 0, "f1").unwrap();
    let table = b.build();
    assert_eq!(
        (
            table.tenant_count(),
            table.host_count(),
            table.wildcard_count()
        ),
        (3, 2, 2)
    );

    let m = table.lookup(&host("WWW.example.com")).unwrap();
    assert_eq!((table.name(m.tenant), m.kind), ("t1", MatchKind::Exact));
    let m = table.lookup(&host("blog.example.com")).unwrap();
    assert_eq!(table.name(m.tenant), "t2");
    assert_eq!(m.kind, MatchKind::Wildcard { suffix_len: 11 });
    let m = table.lookup(&host("a.b.shop.example.com")).unwrap();
    assert_eq!(table.name(m.tenant), "t3");
    // `*.shop.example.com` does not match `shop.example.com` itself...
    let m = table.lookup(&host("shop.example.com")).unwrap();
    assert_eq!(table.name(m.tenant), "t2");
    assert!(table.lookup(&host("example.org")).is_none());
    assert!(table.lookup(&host("com")).is_none());

    let r = table.record(m.tenant);
    assert_eq!((r.tier, table.filer_name(r.filer)), (1, "f2"));
    assert_eq!(table.filer_by_name("f1"), Some(0));
    assert_eq!(r.ring_point, crate::model::ring_point("t2"));
}

#[test]
fn a_tenant_keeps_one_tier_and_filer() {
    let mut b = TenantTableBuilder::default();
    add(&mut b, "a.example", "t1", 0, "f1").unwrap();
    assert_eq!(
        add(&mut b, "b.example", "t1", 1, "f1").unwrap_err(),
        AddError::TierMismatch {
            tenant: 0,
            first: 0,
            this: 1,
        }
    );
    assert_eq!(
        add(&mut b, "c.example", "t1", 0, "f2").unwrap_err(),
        AddError::FilerMismatch {
            tenant: 0,
            first: 0,
            this: 1,
        }
    );
}

#[test]
fn lines_of_a_tenant_far_apart_are_one_tenant_and_must_agree() {
    let mut b = TenantTableBuilder::default();
    add(&mut b, "a.example", "t1", 0, "f1").unwrap();
    add(&mut b, "b.example", "t2", 0, "f1").unwrap();
    assert!(matches!(
        add(&mut b, "c.example", "t1", 1, "f1"),
        Err(AddError::TierMismatch { tenant: 0, .. })
    ));
    add(&mut b, "x.example", "t2", 0, "f1").unwrap();
    assert!(matches!(
        add(&mut b, "d.example", "t1", 0, "f2"),
        Err(AddError::FilerMismatch { tenant: 0, .. })
    ));
    add(&mut b, "y.example", "t2", 0, "f1").unwrap();
    add(&mut b, "e.example", "t1", 0, "f1").unwrap();
    let t = b.build();
    assert_eq!(t.tenant_count(), 2);
    let e = t.lookup(&host("e.example")).unwrap();
    assert_eq!(t.name(e.tenant), "t1");
    assert_eq!(t.lookup(&host("a.example")).unwrap().tenant, e.tenant);
    assert_eq!(t.lookup(&host("y.example")).unwrap().tenant, 1);
}

#[test]
fn many_tenants_past_the_announced_size_are_found_again() {
    let mut b = TenantsBuilder::with_capacity(4, 0);
    let names: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        assert_eq!(b.tenant(n.as_bytes(), 0, b"f").unwrap(), i as TenantIdx);
    }
    for (i, n) in names.iter().enumerate().rev() {
        assert_eq!(b.tenant(n.as_bytes(), 0, b"f").unwrap(), i as TenantIdx);
        assert_eq!(b.name(i as TenantIdx), n.as_bytes());
    }
    assert_eq!(b.tenant_count(), 10_000);
}

#[test]
fn malformed_hosts_are_refused_and_leave_nothing_behind() {
    let mut b = TenantTableBuilder::default();
    assert_eq!(
        add(&mut b, "bad host", "t1", 0, "f1"),
        Err(AddError::Host(HostError::BadChar(' ')))
    );
    assert_eq!(
        add(&mut b, "*.[::1]", "t1", 0, "f1"),
        Err(AddError::WildcardIp)
    );
    assert_eq!(
        add(&mut b, "a.example:80", "t1", 0, "f1"),
        Err(AddError::Host(HostError::PortNotAllowed))
    );
    add(&mut b, "A.Example.", "t1", 0, "f1").unwrap();
    let t = b.build();
    assert_eq!(t.host_count(), 1);
    assert!(t.lookup(&host("a.example")).is_some());
}

#[test]
fn duplicate_hosts_name_the_first_tenant_and_the_key() {
    let mut b = TenantTableBuilder::default();
    add(&mut b, "a.example", "t1", 0, "f1").unwrap();
    assert_eq!(
        add(&mut b, "A.example.", "t2", 0, "f1"),
        Err(AddError::DuplicateHost { first: 0 })
    );
    assert_eq!(b.hosts.key(), b"a.example");
    add(&mut b, "*.a.example", "t1", 0, "f1").unwrap();
    assert_eq!(
        add(&mut b, "*.a.example", "t1", 0, "f1"),
        Err(AddError::DuplicateHost { first: 0 })
    );
    let t = b.build();
    assert_eq!(t.lookup(&host("a.example")).unwrap().tenant, 0);
    assert_eq!((t.host_count(), t.wildcard_count()), (1, 1));
}
