from django.urls import path

from chainlearn.fastpath import hot_read
from credentials import views

urlpatterns = [
    path("credentials", hot_read(views.CredentialListView), name="credentials-list"),
    path("credentials/mint", views.MintView.as_view(), name="credentials-mint"),
]
