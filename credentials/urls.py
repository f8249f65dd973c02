from django.urls import path

from credentials import views

urlpatterns = [
    path("credentials", views.CredentialListView.as_view(), name="credentials-list"),
    path("credentials/mint", views.MintView.as_view(), name="credentials-mint"),
]
