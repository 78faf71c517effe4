import uuid

from django import forms


def new_order_id():
    return uuid.uuid4().hex


class OrderForm(forms.Form):
    """An order, from the HTML form or a JSON object. order_id is the
    message id: the form carries one made when it was shown, so that
    sending it again (after a 503) does not make a second order for a
    consumer that drops the ids it has seen."""

    customer = forms.IntegerField(min_value=1, max_value=999999999)
    item = forms.CharField(max_length=100)
    quantity = forms.IntegerField(min_value=1, max_value=1000,
                                  required=False, initial=1)
    order_id = forms.RegexField(regex=r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z",
                                required=False, widget=forms.HiddenInput)

    def order(self):
        """The message to publish (the form is valid)."""
        d = self.cleaned_data
        return {"order_id": d["order_id"] or new_order_id(),
                "customer": d["customer"], "item": d["item"],
                "quantity": d["quantity"] or 1}
