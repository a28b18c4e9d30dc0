//! The own HTTP/1.1 codec (`proxy::h1`) against what hyper's path costs:
//! a browser-like request head and a webserver's response head parsed and
//! checked, and a chunked body validated, per call.
//!
//!     cargo bench --bench h1

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use predictor::proxy::h1::chunked::{ChunkedDecoder, Limits};
use predictor::proxy::h1::request::RequestHead;
use predictor::proxy::h1::response::{Answering, ResponseHead};

const REQUEST: &[u8] = b"GET /wp-content/themes/site/style.css?ver=6.4.2 HTTP/1.1\r\n\
Host: site123456.example\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n\
Accept: text/css,*/*;q=0.1\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://site123456.example/\r\n\
Cookie: wordpress_test_cookie=WP%20Cookie%20check; wp-settings-time-1=1700000000\r\n\
Connection: keep-alive\r\n\
Sec-Fetch-Dest: style\r\n\
Sec-Fetch-Mode: no-cors\r\n\
Sec-Fetch-Site: same-origin\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx\r\n\
Date: Wed, 02 Dec 2026 04:00:00 GMT\r\n\
Content-Type: text/css\r\n\
Content-Length: 48211\r\n\
Last-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n\
Connection: keep-alive\r\n\
ETag: \"656e0a10-bc53\"\r\n\
Cache-Control: max-age=31536000\r\n\
Accept-Ranges: bytes\r\n\r\n";

fn benches(c: &mut Criterion) {
    let mut head = RequestHead::default();
    c.bench_function("request head (12 fields)", |b| {
        b.iter(|| head.parse(black_box(REQUEST), 16 << 10).unwrap())
    });
    let mut res = ResponseHead::default();
    let get = Answering {
        head: false,
        upgrade: false,
    };
    c.bench_function("response head (10 fields)", |b| {
        b.iter(|| res.parse(black_box(RESPONSE), 16 << 10, get).unwrap())
    });

    // 64 KiB of data in 4 KiB chunks, fed in 16 KiB reads.
    let mut body = Vec::new();
    for _ in 0..16 {
        body.extend_from_slice(b"1000\r\n");
        body.extend(std::iter::repeat_n(b'x', 4096));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut group = c.benchmark_group("chunked");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("validate 64 KiB in 4 KiB chunks", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::new(Limits::default());
            let mut data = 0;
            for read in black_box(&body).chunks(16 << 10) {
                let mut at = 0;
                while at < read.len() {
                    let step = d.feed(&read[at..]).unwrap();
                    data += step.data.len();
                    at += step.consumed;
                    if step.done {
                        break;
                    }
                }
            }
            assert!(d.is_done());
            data
        })
    });
    group.finish();
}

criterion_group!(h1_benches, benches);
criterion_main!(h1_benches);
