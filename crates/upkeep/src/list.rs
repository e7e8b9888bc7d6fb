//! The one pager: every list follows `continue` tokens in pages of
//! [`PAGE_SIZE`], as kubectl does (`--chunk-size`, default 500:
//! `staging/src/k8s.io/kubectl/pkg/cmd/util/helpers.go` `DefaultChunkSize`;
//! `pkg/drain/drain.go` `GetPodsForDeletion` pages with it).
//! A caller that reduces each object as it comes uses [`for_each_page`], so
//! only one page is held at a time; one that needs the whole list uses
//! [`list_all`].

use kube::Resource;
use kube::api::{Api, ListParams};
use serde::de::DeserializeOwned;

/// Objects per list page, kubectl's `--chunk-size` default.
pub const PAGE_SIZE: u32 = 500;

/// Lists every object matching `params`, handing each to `each` and dropping
/// the page before the next is fetched. `params.limit` is replaced by
/// [`PAGE_SIZE`].
pub async fn for_each_page<K>(
    api: &Api<K>,
    params: &ListParams,
    mut each: impl FnMut(K),
) -> kube::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.clone().limit(PAGE_SIZE);
    loop {
        let page = api.list(&params).await?;
        let next = page.metadata.continue_.filter(|t| !t.is_empty());
        page.items.into_iter().for_each(&mut each);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// Lists every object matching `params`, all pages.
pub async fn list_all<K>(api: &Api<K>, params: &ListParams) -> kube::Result<Vec<K>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut items = Vec::new();
    for_each_page(api, params, |k| items.push(k)).await?;
    Ok(items)
}
