//! The target bodies. Each returns for every input; results are consumed, never unwrapped.

use crate::fixtures::{auditor_keys, fixtures, scratch_file, JobFile, MIN_PARTICIPANTS};
use fedbank_common::alerts::{read_rates, RatePublicKey};
use fedbank_common::audit::verify_reader;
use fedbank_common::committee::DecryptionRequest;
use fedbank_common::ids::NodeId;
use fedbank_common::policy::MemberRecord;
use fedbank_common::protocol::Inbound;
use fedbank_common::secagg::{
    Ciphertext, Encryptor, JointPublicKey, KeySetup, PublicKeyShare, SecretKeyShare,
};
use fedbank_common::wire;
use fedbank_coordinator::{Checkpoint, CoordinatorMachine};
use fedbank_participant::contact_log::read_contacts;

use fedbank_participant::rfm::read_transactions;
use fedbank_participant::{CommitteeMember, LocalTable};
use fedbank_transport::frame::frame_from_stream_bytes;

fn node(name: &str) -> Option<NodeId> {
    NodeId::new(name).ok()
}

/// A QUIC stream's content as the coordinator or a participant receives it: head, declared
/// length against the kind's limit, exact body, then the message and its use.
pub fn frame(data: &[u8]) {
    if let Ok(frame) = frame_from_stream_bytes(data, Inbound::<u64>::limit) {
        if let Ok(message) = Inbound::<u64>::decode(&frame.bytes) {
            receive(message);
        }
    }
}

/// A message's stream as QUIC's unordered reads hand it over, with the connection's parity
/// datagrams: a sequence of operations, each an opcode byte and its operands —
/// `0` a piece of the stream (offset: u32, length: u16, bytes), `1` a parity datagram for the
/// message (length: u16, bytes), `2` a datagram offered to the connection's parity inbox
/// (length: u16, bytes) — after each of which the assembly is asked for the message, which is
/// decoded and used when complete.
pub fn parity(data: &[u8]) {
    if let Some(frame) = reassemble(data) {
        if let Ok(message) = Inbound::<u64>::decode(&frame.bytes) {
            receive(message);
        }
    }
}

/// The message the operations of [`parity`] complete, if they do.
pub fn reassemble(data: &[u8]) -> Option<fedbank_transport::frame::RawFrame> {
    use fedbank_transport::assembly::Assembly;
    use fedbank_transport::fec::ParityShard;
    use fedbank_transport::frame::ParityInbox;
    let mut assembly = Assembly::new(Inbound::<u64>::limit);
    let inbox = ParityInbox::default();
    let mut rest = data;
    // A length beyond the input takes what is left.
    let take = |rest: &mut &[u8], n: usize| -> Vec<u8> {
        let (head, tail) = rest.split_at(n.min(rest.len()));
        *rest = tail;
        head.to_vec()
    };
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let outcome = match op % 3 {
            0 => {
                let head = rest.get(..6)?;
                let offset = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
                let len = usize::from(u16::from_le_bytes([head[4], head[5]]));
                rest = &rest[6..];
                let bytes = take(&mut rest, len);
                assembly.add_piece(u64::from(offset), bytes.into())
            }
            1 | 2 => {
                let head = rest.get(..2)?;
                let len = usize::from(u16::from_le_bytes([head[0], head[1]]));
                rest = &rest[2..];
                let bytes = take(&mut rest, len);
                if op % 3 == 1 {
                    if let Ok(shard) = ParityShard::parse(bytes.into()) {
                        let _ = assembly.add_parity(shard);
                    }
                } else {
                    inbox.offer(bytes.into());
                }
                Ok(())
            }
            _ => Ok(()),
        };
        outcome.ok()?;
        if let Some(frame) = assembly.complete().ok()? {
            return Some(frame);
        }
    }
    None
}

/// Any protocol message, in either torus, then what the receiving role does with it.
pub fn message(data: &[u8]) {
    if let Ok(message) = Inbound::<u64>::decode(data) {
        receive(message);
    }
    if let Ok(message) = Inbound::<u128>::decode(data) {
        let _ = message.name();
    }
}

/// What the receiving role does with a message that decoded.
fn receive(message: Inbound<u64>) {
    let f = fixtures();
    match message {
        // The coordinator checks the statement and adds a contribution to the round's aggregate.
        Inbound::Contribution(c) => {
            if f.trust().verify(&c.reveal).is_ok() {
                let _ = add_and_request(c.ciphertext, c.reveal);
            }
        }
        // The coordinator checks a commitment and takes it into a round's aggregate.
        Inbound::ContributionCommitment(c) => {
            if f.trust().verify(&c.statement).is_ok() {
                let mut aggregate = fedbank_coordinator::RoundAggregate::<u64>::new(
                    f.setup.clone(),
                    c.round,
                    "fuzz",
                    c.statement.statement.value_count,
                );
                if let Some(p1) = node("p1") {
                    let _ = aggregate.commit(p1, c.statement);
                    let _ = aggregate.fix_roster().map(|r| r.digest());
                }
            }
        }
        // A participant checks a roster's form before looking for its own commitment.
        Inbound::RevealRequest(r) => {
            if let (Ok(()), Some(p1)) = (r.roster.validate(), node("p1")) {
                let _ = (r.roster.statement_of(&p1), r.roster.digest());
            }
        }
        // The coordinator checks a member's commitment; a member checks the commitment set.
        Inbound::Commitment(c) => {
            let _ = f.trust().verify(&c);
        }
        Inbound::Commitments(set) => {
            let _ = set.verify(&f.trust());
        }
        // The coordinator checks a revealed key share against the commitments.
        Inbound::KeyShare(share) => {
            let set = &f.bundle.commitments;
            let _ = share.verify(&f.trust(), set, set.digest());
        }
        // A participant checks the whole ceremony and encrypts under the key it formed.
        Inbound::KeyBundle(bundle) => {
            if let Ok(key) = bundle.verify(&f.trust()) {
                let _ = Encryptor::new(key, f.params.clone()).and_then(|e| e.encrypt(&[1, -2, 3]));
            }
        }
        // A committee member checks the request against its policy and decrypts.
        Inbound::Decrypt(request) => decrypt(&request),
        // The coordinator combines a partial with a valid one of the other member.
        Inbound::Partial(partial) => {
            let aggregate = two_contributor_aggregate();
            let request = f.request();
            if let Ok(other) = f.member(1).handle(&request) {
                let _ = aggregate.combine(&f.params, &request, &[partial, other]);
            }
        }
        Inbound::KeySetup(setup) => {
            let _ = setup.validate();
        }
        other => {
            let _ = other.name();
        }
    }
}

fn two_contributor_aggregate() -> fedbank_coordinator::RoundAggregate<u64> {
    let f = fixtures();
    let mut aggregate = f.aggregate();
    if let Some(p1) = node("p1") {
        let second = f.second_ciphertext();
        let roster = f.roster(&mut aggregate);
        let _ = aggregate.add(p1, second.clone(), f.reveal("p1", second, &roster));
    }
    aggregate
}

fn decrypt(request: &DecryptionRequest<u64>) {
    let mut member = fixtures().member(0);
    let _ = member.handle(request);
}

/// Adds `ciphertext` from `p1` to an aggregate already holding `p0`'s, asks for the decryption
/// and has a member answer.
fn add_and_request(
    ciphertext: Ciphertext<u64>,
    reveal: fedbank_common::endorsement::Signed<fedbank_common::roster::RevealStatement>,
) -> Option<()> {
    let mut aggregate = fixtures().aggregate();
    aggregate.add(node("p1")?, ciphertext, reveal).ok()?;
    let request = aggregate.decryption_request(MIN_PARTICIPANTS).ok()?;
    decrypt(&request);
    Some(())
}

/// A round where `p0` contributes the fixture's ciphertext and `p1` commits to and reveals
/// `ciphertext`; then the decryption request and a member's answer.
fn commit_reveal_and_request(ciphertext: Ciphertext<u64>) -> Option<()> {
    let f = fixtures();
    let mut aggregate = fedbank_coordinator::RoundAggregate::<u64>::new(
        f.setup.clone(),
        crate::fixtures::ROUND,
        "fuzz",
        ciphertext.value_count,
    );
    aggregate
        .commit_and_reveal(
            vec![
                (
                    node("p0")?,
                    f.ciphertext.clone(),
                    f.statement("p0", &f.ciphertext),
                ),
                (
                    node("p1")?,
                    ciphertext.clone(),
                    f.statement("p1", &ciphertext),
                ),
            ],
            |p, reveal| f.sign_reveal(p, reveal),
        )
        .ok()?;
    let request = aggregate.decryption_request(MIN_PARTICIPANTS).ok()?;
    decrypt(&request);
    Some(())
}

/// A contribution's ciphertext on its own (wrong length, profile, epoch, body packing).
pub fn ciphertext(data: &[u8]) {
    if let Ok(ciphertext) = wire::decode::<Ciphertext<u64>>(data) {
        let _ = ciphertext.validate();
        // Committed and revealed by p1 as an honest participant would: the aggregate and the
        // member then see the ciphertext itself.
        let _ = commit_reveal_and_request(ciphertext);
    }
}

/// Key material: a key setup, a public-key share, a joint key, a stored secret share and a
/// stored member record (selected by the first byte).
pub fn keys(data: &[u8]) {
    let Some((selector, bytes)) = data.split_first() else {
        return;
    };
    let f = fixtures();
    match selector % 5 {
        0 => {
            if let Ok(setup) = wire::decode::<KeySetup>(bytes) {
                let _ = setup.validate();
            }
        }
        1 => {
            if let Ok(share) = wire::decode::<PublicKeyShare<u64>>(bytes) {
                if share.validate().is_ok() {
                    let _ = JointPublicKey::combine(&f.setup, &[share, f.public_shares[1].clone()]);
                }
            }
        }
        2 => {
            if let Ok(key) = wire::decode::<JointPublicKey<u64>>(bytes) {
                if key.validate().is_ok() {
                    let _ = Encryptor::new(key, f.params.clone()).and_then(|e| e.encrypt(&[5]));
                }
            }
        }
        3 => {
            if let Ok(share) = wire::decode::<SecretKeyShare<u64>>(bytes) {
                if share.validate().is_ok() {
                    if let Ok(mut member) =
                        CommitteeMember::from_share(share, f.params.clone(), &f.terms())
                    {
                        let _ = member.handle(&f.request());
                    }
                }
            }
        }
        _ => {
            let _ = wire::decode::<MemberRecord>(bytes);
        }
    }
}

/// The tfhe bytes of private alerts (selected by the first byte): the auditor's compact public
/// key as a participant reads it, a participant's encrypted rates as the coordinator reads
/// them (five rules), and a tally as the auditor decrypts it.
pub fn alert_bytes(data: &[u8]) {
    let Some((selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            if let Ok(key) = RatePublicKey::from_bytes(bytes) {
                let _ = key.encrypt_rates(&[1, 2]);
            }
        }
        1 => {
            let _ = read_rates(bytes, 5);
        }
        _ => {
            let _ = auditor_keys().decrypt_count(bytes);
        }
    }
}

/// An audit trail file.
pub fn trail(data: &[u8]) {
    let _ = verify_reader(data, None);
}

/// A job file (TOML), validated; or a coordinator checkpoint (JSON) resumed against the stats
/// job (selected by the first byte).
pub fn config(data: &[u8]) {
    let Some((selector, bytes)) = data.split_first() else {
        return;
    };
    if selector % 2 == 0 {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return;
        };
        if let Ok(file) = toml::from_str::<JobFile>(text) {
            if let Ok(job) = file.job.validate() {
                let _ = job.digest();
                let _ = job.max_message_bytes();
            }
        }
    } else if let Ok(checkpoint) = serde_json::from_slice::<Checkpoint>(bytes) {
        let _ = CoordinatorMachine::<u64>::resume(
            fixtures().jobs[0].clone(),
            &checkpoint,
            fixtures().trust(),
        );
    }
}

/// Seeds of `csv_tables`: selector and file content.
pub(crate) const CSV_SEEDS: &[(u8, &str)] = &[
    (
        0,
        "customer_id,age,income,balance,tenure_months,products_held,transactions_12m,spend_12m\n\
         A-1,33,55304,847,5,1,147,6633.22\nA-2,35,,956,151,1,138,1074.03\n",
    ),
    (
        1,
        "customer_id,date,quantity,amount\nC00001,1997-01-01,1,11.77\nC00002,1997-01-12,1,12.00\n\
         C00001,1997-03-02,2,30.10\n",
    ),
    (
        2,
        "rownames,churn,female,senior_citizen,partner,dependents,tenure,phone_service,multiple_lines,internet_service,online_security,online_backup,device_protection,tech_support,streaming_tv,streaming_movies,contract,paperless_billing,payment_method,monthly_charges,total_charges\n\
         1,No,1,0,1,0,1,0,No phone service,DSL,No,Yes,No,No,No,No,Month-to-month,1,Electronic check,29.85,29.85\n\
         2,No,0,0,0,0,34,1,No,DSL,Yes,No,Yes,No,No,No,One year,0,Mailed check,56.95,1889.5\n",
    ),
    (
        3,
        "customer_id,timestamp,channel,campaign\nB-1,2026-08-01T10:32:00,email,autumn\n\
         B-1,2026-02-22T16:04:00,sms,autumn\n\0customer_id,opted_out,opt_out_date,email,sms,phone\n\
         B-1,0,,1,1,1\nB-2,1,2026-03-01,1,0,1\n",
    ),
];

/// A participant's CSV inputs (selected by the first byte): a customer table for the stats
/// job, a transaction log for the segment job (and its RFM rows), a labeled customer table for
/// the propensity job, and a contact log with its consent table, split at the first NUL byte,
/// for the compliance job. The bytes are written to a scratch file and read as nodes read them.
pub fn csv_tables(data: &[u8]) {
    let Some((selector, bytes)) = data.split_first() else {
        return;
    };
    let f = fixtures();
    let table = scratch_file("table.csv");
    match selector % 4 {
        0 => {
            if std::fs::write(&table, bytes).is_err() {
                return;
            }
            let spec = f.jobs[0].spec();
            let columns: Vec<String> = spec.features.iter().map(|c| c.name.clone()).collect();
            let _ = LocalTable::read_csv_with_ids(&table, &columns, Some("customer_id"));
        }
        1 => {
            let Some(columns) = f.jobs[1].segment().and_then(|s| s.transactions.as_ref()) else {
                return;
            };
            if std::fs::write(&table, bytes).is_err() {
                return;
            }
            if let Ok(history) = read_transactions(&table, columns) {
                let _ = history.rfm_table(10_000);
            }
        }
        2 => {
            let job = &f.jobs[2];
            let Some(spec) = job.propensity() else {
                return;
            };
            if std::fs::write(&table, bytes).is_err() {
                return;
            }
            let _ = fedbank_participant::customers::read_customers(
                &table,
                &job.spec().features,
                spec,
                job.spec().id_column.as_deref(),
            );
        }
        _ => {
            let job = &f.jobs[3];
            let Some(spec) = job.compliance() else {
                return;
            };
            let split = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            let consent_path = scratch_file("consent.csv");
            let consent = bytes.get(split + 1..).unwrap_or(&[]);
            if std::fs::write(&table, &bytes[..split]).is_err()
                || std::fs::write(&consent_path, consent).is_err()
            {
                return;
            }
            if let Ok(log) = read_contacts(&table, &consent_path, spec, 100_000) {
                let _ = log.evaluate(spec);
            }
        }
    }
}
