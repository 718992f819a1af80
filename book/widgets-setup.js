// Loaded after RequireJS and before the Jupyter widget manager (embed-amd.js) on pages with widgets; see tools/build_book.py.
(function () {
  // 1. The manager finds its fonts next to the module's own URL, which RequireJS derives from the module name; map that name to
  //    the folder the book serves it from (_static/widgets/), so nothing is fetched from a CDN or a missing path.
  var widgets = new URL("widgets", document.currentScript.src).href;
  window.require.config({paths: {"@jupyter-widgets/html-manager/dist": widgets}});
  // 2. Widget labels are typeset with MathJax 2's `MathJax.Hub.Queue`; the book serves MathJax 3, so translate the call.
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (!mathjax || mathjax.Hub || !mathjax.startup) return;
    mathjax.Hub = {
      Queue: function (job) {
        var element = Array.isArray(job) ? job[2] : undefined;
        mathjax.startup.promise = mathjax.startup.promise
          .then(function () { return mathjax.typesetPromise(element ? [element] : undefined); })
          .catch(function (error) { console.warn("MathJax could not typeset a widget label", error); });
      },
    };
  });
})();
