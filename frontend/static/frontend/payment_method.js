// The payment-method page: Stripe.js's card element collects the card and confirms the SetupIntent at
// Stripe; only the SetupIntent's id is posted to Computeflow, which re-reads it from Stripe.
(function () {
  const form = document.getElementById("card-form");
  if (!form || typeof Stripe === "undefined") return;
  // Stripe.js writes the card field's hints and its errors itself: in the page's language ("zh" is Simplified Chinese).
  const locale = (document.documentElement.lang || "").toLowerCase().startsWith("zh") ? "zh" : "en";
  const stripe = Stripe(form.dataset.publishableKey, {locale: locale});
  const card = stripe.elements().create("card");
  card.mount("#card-element");
  const error = document.getElementById("card-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const result = await stripe.confirmCardSetup(form.dataset.clientSecret, {payment_method: {card: card}});
    if (result.error) {
      // Stripe.js words its own errors (in the language Stripe() was given); the fallback is ours, translated in the page.
      error.textContent = (result.error && result.error.message) || form.dataset.errorFallback;
      button.disabled = false;
      return;
    }
    form.elements.setup_intent.value = result.setupIntent.id;
    form.submit();
  });
})();
