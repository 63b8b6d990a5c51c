//! Whole listings as streams: every item of a range, page after page,
//! following `nextCursor` until Pientegra says `null`.
//!
//! Reconciliation walks whole time windows; doing the cursor bookkeeping once
//! here keeps it from being redone (and gotten subtly wrong) at every caller.

use std::future::Future;

use futures::{Stream, StreamExt, stream};
use pientegra_shared::wire::{EventRecord, EventsQuery, Intent, ListQuery, Page, Withdrawal};

use super::{PientegraApi, PientegraError};

/// Every item of a listing, following nextCursor until null.
///
/// Starts at `query.cursor` (usually `None`). Each page is fetched with the
/// client's own retries; the stream ends after the first error it yields.
pub fn all_intents<'a>(
    api: &'a dyn PientegraApi,
    query: ListQuery,
) -> impl Stream<Item = Result<Intent, PientegraError>> + 'a {
    let first = query.cursor.clone();
    paginate(first, move |cursor| {
        let query = ListQuery { cursor, ..query.clone() };
        async move { api.list_intents(&query).await }
    })
}

/// Every withdrawal of a listing, following nextCursor until null (see [`all_intents`]).
pub fn all_withdrawals<'a>(
    api: &'a dyn PientegraApi,
    query: ListQuery,
) -> impl Stream<Item = Result<Withdrawal, PientegraError>> + 'a {
    let first = query.cursor.clone();
    paginate(first, move |cursor| {
        let query = ListQuery { cursor, ..query.clone() };
        async move { api.list_withdrawals(&query).await }
    })
}

/// Every event record of a listing, following nextCursor until null (see [`all_intents`]).
pub fn all_events<'a>(
    api: &'a dyn PientegraApi,
    query: EventsQuery,
) -> impl Stream<Item = Result<EventRecord, PientegraError>> + 'a {
    let first = query.cursor.clone();
    paginate(first, move |cursor| {
        let query = EventsQuery { cursor, ..query.clone() };
        async move { api.list_events(&query).await }
    })
}

/// Where the walk stands between pages.
enum Walk {
    /// Fetch the page at this cursor next (`None` is the first page).
    At(Option<String>),
    /// The last page was read, or a fetch failed.
    Finished,
}

/// Fetches pages with `fetch(cursor)`, sending each `nextCursor` back
/// unchanged, and flattens them into a stream of items.
fn paginate<'a, T, F, Fut>(first: Option<String>, mut fetch: F) -> impl Stream<Item = Result<T, PientegraError>> + 'a
where
    T: 'a,
    F: FnMut(Option<String>) -> Fut + 'a,
    Fut: Future<Output = Result<Page<T>, PientegraError>> + 'a,
{
    stream::unfold(Walk::At(first), move |walk| {
        let cursor = match walk {
            Walk::At(cursor) => cursor,
            Walk::Finished => return futures::future::Either::Left(async { None }),
        };
        let page = fetch(cursor.clone());
        futures::future::Either::Right(async move {
            match page.await {
                Err(e) => Some((vec![Err(e)], Walk::Finished)),
                Ok(page) => {
                    let next = match page.next_cursor {
                        None => Walk::Finished,
                        // A cursor that does not move would loop forever; a
                        // broken server must not hang reconciliation.
                        Some(next) if Some(&next) == cursor.as_ref() => {
                            let mut items: Vec<_> = page.data.into_iter().map(Ok).collect();
                            items.push(Err(PientegraError::Protocol {
                                reason: "the listing returned the cursor it was given".into(),
                            }));
                            return Some((items, Walk::Finished));
                        }
                        Some(next) => Walk::At(Some(next)),
                    };
                    Some((page.data.into_iter().map(Ok).collect(), next))
                }
            }
        })
    })
    .flat_map(stream::iter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    fn pages(
        script: Vec<(Option<&'static str>, Vec<u32>, Option<&'static str>)>,
    ) -> impl FnMut(Option<String>) -> futures::future::Ready<Result<Page<u32>, PientegraError>> {
        let mut script = script.into_iter();
        move |cursor| {
            let (expected, data, next) = script.next().expect("no more pages scripted");
            assert_eq!(cursor.as_deref(), expected);
            futures::future::ready(Ok(Page { data, next_cursor: next.map(str::to_owned) }))
        }
    }

    #[test]
    fn pages_are_followed_until_a_null_cursor() {
        let fetch =
            pages(vec![(None, vec![1, 2], Some("a")), (Some("a"), vec![], Some("b")), (Some("b"), vec![3], None)]);
        let items: Vec<u32> = block_on(paginate(None, fetch).map(|r| r.unwrap()).collect::<Vec<_>>());
        assert_eq!(items, [1, 2, 3]);
    }

    #[test]
    fn a_cursor_that_does_not_move_ends_with_an_error() {
        let fetch = pages(vec![(None, vec![1], Some("a")), (Some("a"), vec![2], Some("a"))]);
        let items = block_on(paginate(None, fetch).collect::<Vec<_>>());
        assert_eq!(items.len(), 3);
        assert!(matches!(items[2], Err(PientegraError::Protocol { .. })));
    }

    #[test]
    fn an_error_ends_the_stream() {
        let mut calls = 0;
        let fetch = |_cursor: Option<String>| {
            calls += 1;
            futures::future::ready(Err::<Page<u32>, _>(PientegraError::Unavailable { reason: "down".into() }))
        };
        let items = block_on(paginate(None, fetch).collect::<Vec<_>>());
        assert_eq!(items.len(), 1);
        assert_eq!(calls, 1);
    }
}
