//! The render worker on the sample PDF: document info and outline, pixels with the
//! watermark, text without it, neighbours pre-rendered, a hostile input refused cleanly.

// Setup helpers outside #[test] fns: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use tally_viewer::render::{PageImage, Renderer, Reply, Request, images_to_pdf};
use zeroize::Zeroizing;

fn sample() -> Zeroizing<Vec<u8>> {
    Zeroizing::new(
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf")).unwrap(),
    )
}

fn reddish(img: &PageImage) -> usize {
    img.rgba()
        .chunks_exact(4)
        .filter(|p| {
            let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
            r > g + 20 && r > b + 20
        })
        .count()
}

#[test]
fn pages_outline_text_watermark_and_prefetch() {
    let r = Renderer::start(sample(), "Licensed to Ada Reader".into(), Box::new(|| {}));
    let Some(Reply::Opened(info)) = r.recv_timeout(Duration::from_secs(30)) else {
        panic!("no Opened reply");
    };
    assert_eq!(info.page_sizes.len(), 7);
    assert_eq!(info.page_sizes[0], (612.0, 792.0));
    let titles: Vec<(&str, Option<usize>)> = info
        .outline
        .iter()
        .map(|e| (e.title.as_str(), e.page))
        .collect();
    assert_eq!(titles[0], ("Title page", Some(0)));
    assert_eq!(titles[1], ("Sonnet 18", Some(1)));
    assert_eq!(titles[6], ("Sonnet 130", Some(6)));

    r.send(Request::Page {
        index: 2,
        width: 600,
    });
    let mut pages: HashMap<usize, PageImage> = HashMap::new();
    let mut texts: HashMap<usize, String> = HashMap::new();
    while pages.len() < 3 || texts.len() < 7 {
        match r.recv_timeout(Duration::from_secs(30)).expect("a reply") {
            Reply::Page {
                index,
                width,
                image,
            } => {
                assert_eq!(width, 600);
                pages.insert(index, image);
            }
            Reply::Text { index, text } => {
                texts.insert(index, text.to_string());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The page asked for, then both neighbours, unasked.
    let mut got: Vec<usize> = pages.keys().copied().collect();
    got.sort();
    assert_eq!(got, vec![1, 2, 3]);
    let p = &pages[&2];
    assert_eq!((p.width, p.height), (600, 776));
    assert_eq!(p.rgba().len(), 600 * 776 * 4);
    // Black text on white: every reddish pixel is the watermark.
    assert!(reddish(p) > 200, "watermark pixels: {}", reddish(p));
    assert!(texts[&1].contains("Shall I compare thee to a summer's day?"));
    assert!(texts[&6].contains("My mistress' eyes are nothing like the sun"));
    assert!(
        texts.values().all(|t| !t.contains("Ada Reader")),
        "watermark not in text"
    );
}

#[test]
fn print_raster_is_a_pdf_pdfium_reads() {
    let r = Renderer::start(sample(), "Licensed to Ada Reader".into(), Box::new(|| {}));
    r.send(Request::Print {
        pages: vec![1, 4],
        dpi: 72,
    });
    loop {
        match r.recv_timeout(Duration::from_secs(30)).expect("a reply") {
            Reply::PrintReady(job) => {
                let job = job.unwrap();
                let pdfium = tally_viewer::render::pdfium().unwrap();
                let doc = pdfium.load_pdf_from_byte_slice(&job, None).unwrap();
                assert_eq!(doc.pages().len(), 2);
                let size = doc.pages().page_size(0).unwrap();
                assert!((size.width().value - 612.0).abs() < 1.0);
                break;
            }
            Reply::Opened(_) | Reply::Text { .. } | Reply::Page { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // An empty image list still makes a well-formed (if empty) file.
    assert!(images_to_pdf(&[], 72).starts_with(b"%PDF-1.4"));
}

#[test]
fn a_damaged_document_is_refused_without_a_panic() {
    // Not a PDF at all, then a PDF cut short with its cross-reference gone.
    for bytes in [
        Zeroizing::new(b"%PDF-1.4 this is not a document".to_vec()),
        Zeroizing::new(sample()[..4000].to_vec()),
    ] {
        let r = Renderer::start(bytes, "x".into(), Box::new(|| {}));
        match r.recv_timeout(Duration::from_secs(30)) {
            Some(Reply::OpenFailed(e)) => assert!(e.contains("could not be read"), "{e}"),
            Some(Reply::Opened(info)) => {
                // pdfium repaired it: a page past the end fails cleanly, by name.
                let n = info.page_sizes.len();
                r.send(Request::Page {
                    index: n + 5,
                    width: 100,
                });
                loop {
                    match r.recv_timeout(Duration::from_secs(30)).expect("a reply") {
                        Reply::Failed { index, .. } => {
                            assert_eq!(index, n + 5);
                            break;
                        }
                        Reply::Text { .. } => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
