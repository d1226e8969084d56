// Progressive: everything works without it. Asks before a hold is lifted.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.action.endsWith("/holds/lift") && !window.confirm("Lift this legal hold?")) {
    event.preventDefault();
  }
});
