from django.urls import path

from credentials.views import CredentialViewSet

urlpatterns = [
    path("credentials", CredentialViewSet.as_view({"get": "list"}), name="credentials-list"),
    path("credentials/mint", CredentialViewSet.as_view({"post": "mint"}), name="credentials-mint"),
]
